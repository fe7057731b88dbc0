import type { CodegenConfig } from '@graphql-codegen/cli';

/** Typed documents for the operations in src/client/operations, from the committed schema. */
const config: CodegenConfig = {
  schema: 'schema/schema.graphql',
  documents: ['src/client/operations/**/*.graphql'],
  ignoreNoDocuments: false,
  generates: {
    'src/client/generated/': {
      preset: 'client',
      // persisted-documents.json is the allow-list of FLEETPROOF_GRAPHQL_PERSISTED_ONLY mode.
      presetConfig: { fragmentMasking: false, persistedDocuments: true },
      config: {
        emitLegacyCommonJSImports: false,
        useTypeImports: true,
        enumsAsTypes: true,
        scalars: { DateTime: 'string', JSON: 'unknown' },
      },
    },
  },
};

export default config;
