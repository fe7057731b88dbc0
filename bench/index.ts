/**
 * Benchmarks, run by name: `npm run bench -- <name> [options]`. Timed numbers live here, never in tests.
 */
const BENCHMARKS: Record<string, { summary: string; run: (args: string[]) => Promise<void> }> = {
  enroll: {
    summary:
      'end-to-end OTT + EST simpleenroll per second over HTTPS [--concurrency 16] [--seconds 60] [--devices N] [--embedded] [--profile F.cpuprofile]',
    run: async (args) => (await import('./enroll.js')).runEnrollBenchmark(args),
  },
  attest: {
    summary:
      'verified attestations per second end to end over a real broker, devices in a separate process: CPU per verification, publish-to-event p50/p99, raw P-256 verify ceiling [--devices 2000] [--seconds 60] [--warmup 5] [--rate N/s, 0 = as fast as decided] [--broker mqtt://127.0.0.1:1883] [--connections 8] [--embedded]',
    run: async (args) => (await import('./attest.js')).runAttestBenchmark(args),
  },
  api: {
    summary:
      'GraphQL fleet page, SIEM pull and subscription fan-out on a seeded PostgreSQL fleet [--seed | --reseed] [--seconds 10] [--concurrency 32] [--rate 200] [--subscribers 2000] [--events-per-second 200] [--fanout-seconds 20] [--only fleet,siem,fanout]',
    run: async (args) => (await import('./api.js')).runApiBenchmark(args),
  },
};

const name = process.argv[2];
const benchmark = name ? BENCHMARKS[name] : undefined;
if (!benchmark) {
  if (name) console.error(`unknown benchmark: ${name}`);
  console.error('usage: npm run bench -- <name> [options]\n\nbenchmarks:');
  for (const [key, { summary }] of Object.entries(BENCHMARKS)) console.error(`  ${key.padEnd(8)} ${summary}`);
  process.exit(2);
}
try {
  await benchmark.run(process.argv.slice(3));
  process.exit(0);
} catch (error) {
  console.error(error);
  process.exit(1);
}
