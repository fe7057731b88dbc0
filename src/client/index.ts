/** The typed SDK: `createFleetClient` and the documents (and their types) of src/client/operations. */
export {
  createFleetClient,
  FleetApiError,
  type FleetClient,
  type FleetClientOptions,
} from './fleet-client.js';
export * from './generated/graphql.js';
