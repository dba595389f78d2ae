// Which way dependencies point (README, "Layout"). `npm run deps` checks it; .ci/run runs it.
//   harness -> orchestrate -> api, session, report
//   scenarios -> api, session, agent, checks, memory, kho (decoders)
// Nothing depends on harness; only harness (and bench) on orchestrate; the scenario API, the
// checks and the decoders on nothing of the machinery; no cycles anywhere.
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: "no-circular",
      severity: "error",
      comment: "A cycle ties modules together: nothing in it can be changed or tested alone.",
      from: {},
      to: { circular: true },
    },
    {
      name: "nothing-imports-harness",
      severity: "error",
      comment: "harness/ is the command line: it uses src/, never the other way.",
      from: { path: "^src/" },
      to: { path: "^harness/" },
    },
    {
      name: "only-harness-runs-scenarios",
      severity: "error",
      comment:
        "The runner (src/orchestrate) is driven by harness/ (and the bench); nothing below it reaches up.",
      from: { path: "^src/", pathNot: "^src/(orchestrate|bench)/" },
      to: { path: "^src/orchestrate/" },
    },
    {
      name: "runner-does-not-know-scenarios",
      severity: "error",
      comment:
        "The runner gets its scenarios from harness/: it depends on the scenario API, not on the scenarios.",
      from: { path: "^src/orchestrate/" },
      to: { path: "^src/scenarios/" },
    },
    {
      name: "api-depends-on-nothing",
      severity: "error",
      comment:
        "The scenario API is types and the outcomes a scenario throws: it may name the session's and the agent's types, nothing of the machinery.",
      from: { path: "^src/api/" },
      to: { path: "^src/(orchestrate|scenarios|report|image|host|bench|memory|checks|selftests)/" },
    },
    {
      name: "checks-are-pure",
      severity: "error",
      comment: "Checks are functions from what was seen to findings: no guest, no QEMU, no runner.",
      from: { path: "^src/checks/" },
      to: { path: "^src/(orchestrate|scenarios|session|vm|report|image|kernel|host|bench|memory)/" },
    },
    {
      name: "decoders-are-pure",
      severity: "error",
      comment:
        "The handover decoders (src/kho, src/fdt, src/elf) read bytes: they know nothing of guests or runs.",
      from: { path: "^src/(kho|fdt|elf)/" },
      to: {
        path: "^src/(orchestrate|scenarios|session|vm|report|api|agent|checks|memory|image|kernel|host|bench)/",
      },
    },
    {
      name: "uapi-model-is-pure",
      severity: "error",
      comment:
        "The LUO uAPI model (src/uapi) predicts answers from ops: it knows no guest, no runner, no scenario.",
      from: { path: "^src/uapi/" },
      to: {
        path: "^src/(orchestrate|scenarios|session|vm|report|api|agent|checks|memory|image|kernel|host|bench)/",
      },
    },
    {
      name: "corruption-planner-is-pure",
      severity: "error",
      comment:
        "The corruption matrix's cases, locator and write guard (src/corrupt) work on bytes: the scenario applies them to a guest.",
      from: { path: "^src/corrupt/" },
      to: {
        path: "^src/(orchestrate|scenarios|session|vm|report|api|agent|checks|memory|image|kernel|host|bench)/",
      },
    },
    {
      name: "session-below-scenarios",
      severity: "error",
      comment: "The guest session serves scenarios and the runner; it knows neither.",
      from: { path: "^src/(session|vm|memory|agent)/" },
      to: { path: "^src/(orchestrate|scenarios|report|api|checks)/" },
    },
    {
      name: "reports-below-runner",
      severity: "error",
      comment: "Reports format results; they do not run anything.",
      from: { path: "^src/report/" },
      to: { path: "^src/(orchestrate|scenarios|vm|image|kernel|bench)/" },
    },
    {
      name: "kernel-below-image",
      severity: "error",
      comment: "The guest image is built for a kernel (image -> kernel), never the other way.",
      from: { path: "^src/kernel/" },
      to: { path: "^src/(image|orchestrate|scenarios|session|report)/" },
    },
    {
      name: "vm-below-host",
      severity: "error",
      comment:
        "Host checks (doctor, the KVM probe) boot VMs (host -> vm); QEMU's launcher knows nothing of them.",
      from: { path: "^src/vm/" },
      to: { path: "^src/(host|session|image|kernel)/" },
    },
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    enhancedResolveOptions: { extensions: [".ts", ".js"] },
    exclude: { path: "^(node_modules|out|test/fixtures)" },
  },
};
