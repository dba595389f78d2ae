import { defineConfig } from "vitest/config";

// Two projects: fast pure-code unit tests, and e2e tests that build kernels and boot real guests.
export default defineConfig({
  test: {
    projects: [
      { test: { name: "unit", include: ["test/unit/**/*.test.ts"], testTimeout: 30_000 } },
      {
        test: {
          name: "e2e",
          include: ["test/e2e/**/*.test.ts"],
          testTimeout: 60 * 60_000,
          hookTimeout: 60 * 60_000,
          fileParallelism: false,
        },
      },
    ],
    reporters: [
      "default",
      ["json", { outputFile: "out/test-results.json" }],
      ["junit", { outputFile: "out/junit.xml" }],
    ],
  },
});
