import { writeFile } from 'node:fs/promises';
import { printSchema } from 'graphql';
import { schema } from '../src/graphql/schema.js';

/** Writes schema/schema.graphql from the code-first schema; CI fails when the committed copy differs. */
const target = new URL('../schema/schema.graphql', import.meta.url);
await writeFile(target, `${printSchema(schema)}\n`);
process.stdout.write(`wrote ${target.pathname}\n`);
