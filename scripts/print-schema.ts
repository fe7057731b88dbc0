import { writeFile } from 'node:fs/promises';
import { printSchema } from 'graphql';
import { z } from 'zod';
import { schema } from '../src/graphql/schema.js';
import { policyBundleDocumentSchema } from '../src/policy/policy-bundle.document.js';

/** Writes schema/schema.graphql from the code-first schema; CI fails when the committed copy differs. */
const target = new URL('../schema/schema.graphql', import.meta.url);
await writeFile(target, `${printSchema(schema)}\n`);
process.stdout.write(`wrote ${target.pathname}\n`);

/** The policy bundle document contract, for whoever writes bundles; stale in CI like the schema. */
const bundleTarget = new URL('../schema/policy-bundle.schema.json', import.meta.url);
await writeFile(
  bundleTarget,
  `${JSON.stringify(z.toJSONSchema(policyBundleDocumentSchema, { io: 'input' }), null, 2)}\n`,
);
process.stdout.write(`wrote ${bundleTarget.pathname}\n`);
