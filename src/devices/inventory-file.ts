import { parse } from 'csv-parse/sync';
import { ValidationError } from '../shared/errors.js';

export type InventoryFormat = 'csv' | 'jsonl';

/** The most rows one import may carry; larger vendor lists are sent in several requests. */
export const MAX_IMPORT_ROWS = 100_000;

/**
 * Turns a vendor list into raw rows for InventoryService.import: CSV with a header line naming the
 * runbook's fields (device_id, device_type, ...), or JSON lines with one object per line. Rows are
 * validated later, one by one, so a bad row is reported instead of failing the file.
 */
export function parseInventoryFile(text: string, format: InventoryFormat): unknown[] {
  const rows = format === 'csv' ? parseCsv(text) : parseJsonLines(text);
  if (rows.length > MAX_IMPORT_ROWS) {
    throw new ValidationError('rows', `at most ${MAX_IMPORT_ROWS} rows per import (got ${rows.length})`);
  }
  return rows;
}

function parseCsv(text: string): unknown[] {
  try {
    const records = parse<Record<string, string>>(text, {
      columns: true,
      skip_empty_lines: true,
      trim: true,
      bom: true,
    });
    // Empty cells mean "not given", not an empty value.
    return records.map((record) =>
      Object.fromEntries(Object.entries(record).filter(([, value]) => value !== '')),
    );
  } catch (error) {
    throw new ValidationError('csv', `not valid CSV: ${(error as Error).message}`);
  }
}

function parseJsonLines(text: string): unknown[] {
  return text
    .split(/\r?\n/)
    .map((line, index) => ({ line: line.trim(), number: index + 1 }))
    .filter(({ line }) => line !== '')
    .map(({ line, number }) => {
      try {
        return JSON.parse(line) as unknown;
      } catch {
        throw new ValidationError('jsonl', `line ${number} is not valid JSON`);
      }
    });
}
