import { defineConfig } from 'vitest/config';

export default defineConfig({
  resolve: {
    // graphql 16 ships CommonJS (main) and ESM (module) builds. Node loads the CommonJS one for our
    // dependencies; Vite would pick the ESM one for our own files, and two graphql realms in one
    // schema fail. Point Vite at the same file Node uses.
    alias: [{ find: /^graphql$/, replacement: 'graphql/index.js' }],
  },
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // The embedded database is one backend session: files share it and run one after another.
    fileParallelism: Boolean(process.env.DATABASE_URL),
    pool: 'forks',
  },
});
