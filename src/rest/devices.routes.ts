import { DeviceCertificate } from '../certificates/device-certificate.entity.js';
import { actorOf } from '../auth/token.service.js';
import { parseInventoryFile, type InventoryFormat } from '../devices/inventory-file.js';
import type { Services } from '../services.js';
import { mediaType, readBody, readJson } from './body.js';
import { HttpProblem, withProblems } from './errors.js';
import { clientAddress, requireScope } from './auth.js';
import { deviceJson } from './device.json.js';
import { sendJson } from './problem.js';
import type { Router, RouteRequest } from './router.js';

const JSON_LIMIT = 64 * 1024;
const IMPORT_LIMIT = 32 * 1024 * 1024;

const IMPORT_FORMATS: Record<string, InventoryFormat> = {
  'text/csv': 'csv',
  'application/x-ndjson': 'jsonl',
  'application/jsonl': 'jsonl',
  'application/json-lines': 'jsonl',
};

/** The runbook's device routes: inventory for facilities, the OTT request for devices. */
export function addDeviceRoutes(router: Router, services: Services): void {
  const handle = withProblems<RouteRequest>;

  router.add(
    'POST',
    '/api/v1/cps/devices',
    handle(async ({ raw, res }) => {
      const viewer = await requireScope(services, raw, 'facilities');
      const body = await readJson(raw, JSON_LIMIT);
      const em = services.database.orm.em.fork();
      const { device, outcome } = await services.inventory.register(em, body, actorOf(viewer));
      const current = await em.findOne(DeviceCertificate, { deviceRef: device.id, status: 'ACTIVE' });
      sendJson(res, outcome === 'created' ? 201 : 200, { outcome, device: deviceJson(device, current) });
    }),
  );

  router.add(
    'POST',
    '/api/v1/cps/devices/import',
    handle(async ({ raw, res, logger }) => {
      const viewer = await requireScope(services, raw, 'facilities');
      const format = IMPORT_FORMATS[mediaType(raw)];
      if (!format) {
        throw new HttpProblem(
          415,
          'unsupported-media-type',
          'Send text/csv or application/x-ndjson (JSON lines)',
        );
      }
      const rows = parseInventoryFile((await readBody(raw, IMPORT_LIMIT)).toString('utf8'), format);
      const results = await services.inventory.import(
        services.database.orm.em.fork(),
        rows,
        actorOf(viewer),
        (done, total) => logger.info({ done, total }, 'inventory import progress'),
      );
      const count = (outcome: string) => results.filter((result) => result.outcome === outcome).length;
      sendJson(res, 200, {
        total: results.length,
        created: count('created'),
        updated: count('updated'),
        unchanged: count('unchanged'),
        re_registered: count('re-registered'),
        failed: count('error'),
        // snake_case like the rest of the runbook's JSON (the service's row result is camelCase).
        rows: results
          .filter((result) => result.outcome === 'error')
          .map(({ row, deviceId, outcome, error }) => ({ row, device_id: deviceId, outcome, error })),
      });
    }),
  );

  router.add(
    'GET',
    '/api/v1/cps/devices/{device_id}',
    handle(async ({ raw, res, params }) => {
      await requireScope(services, raw, 'viewer');
      const em = services.database.orm.em.fork();
      const device = await services.inventory.get(em, params.device_id!);
      const current = await em.findOne(DeviceCertificate, { deviceRef: device.id, status: 'ACTIVE' });
      sendJson(res, 200, deviceJson(device, current));
    }),
  );

  router.add(
    'POST',
    '/api/v1/cps/ott/request',
    handle(async ({ raw, res }) => {
      const body = await readJson(raw, JSON_LIMIT);
      const issued = await services.otts.request(services.database.orm.em.fork(), body, {
        address: clientAddress(raw),
        channel: 'rest',
      });
      sendJson(res, 201, { ott: issued.ott, expires_at: issued.expiresAt.toISOString() });
    }),
  );
}
