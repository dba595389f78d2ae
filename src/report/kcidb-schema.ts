// The KernelCI KCIDB I/O schema, version 5.3, as zod: what `kho report kcidb` writes must pass it.
//
// Transcribed from kcidb_io/schema/v05_03.py of https://github.com/kernelci/kcidb-io at commit
// 8971c0269a80307ec6270ff8c78ff3816fc639f6 (2026-02-01; v05_03.py last changed in 4023b0723b4c,
// 2025-03-28, "schema: v5.3: Add input_files field to tests"), with the patterns it inherits from
// v05_00.py (test_path_re, git_repository_url_re, origin_id_pattern) and v03_00.py
// (origin_pattern, sha1/sha256 patterns). v5.3 is `LATEST` in that commit's
// kcidb_io/schema/__init__.py. Every object and property of the published schema is here (the
// descriptions are left out); every object the published schema closes with
// `"additionalProperties": false` is a strict object, the free-form `misc` objects are open.
//
// Formats: kcidb-io validates with jsonschema's Draft 7 format checker. `date-time` (RFC 3339)
// is checked with zod's ISO date-time (with `Z` or an offset); `uri` with the RFC 3986 syntax
// (a scheme, then only URI characters and well-formed %-escapes); `email` (message_id) with
// zod's e-mail check.
import { z } from "zod";

/** The version this module transcribes, written into every document as `version`. */
export const KCIDB_VERSION = { major: 5, minor: 3 } as const;

function shown(x: unknown): string {
  return x === undefined ? "missing" : (JSON.stringify(x) ?? typeof x).slice(0, 60);
}

/** A string matching `re`; refused with "should be <what>, got <value>". */
const matching = (re: RegExp, what: string) =>
  z.string().regex(re, { error: (iss) => `should be ${what}, got ${shown(iss.input)}` });

// --- Patterns (kcidb_io/schema/v03_00.py, v05_00.py, v05_03.py) ----------------------------------

/** v03_00 `origin_pattern`. */
export const ORIGIN_RE = /^[a-z0-9_]+$/;
/** v05_00 `origin_id_pattern`: the origin, a colon, anything without NUL. */
export const ORIGIN_ID_RE = /^[a-z0-9_]+:[^\0]*$/;
/** v05_00 `test_path_re` (v05_03 `path_re`): dot-separated names, or "" for the root. */
export const PATH_RE = /^([a-zA-Z0-9_-]+(\.[a-zA-Z0-9_-]+)*)?$/;
/** v05_00 `git_repository_url_re`. */
const GIT_REPOSITORY_URL_RE = /^https:\/\/[^\0]*$/;
/** v03_00 `git_commit_hash_pattern` (sha1). */
const GIT_COMMIT_HASH_RE = /^[0-9a-f]{40}$/;
/** `patchset_hash`: empty, or v03_00 `sha256_pattern`. */
const PATCHSET_HASH_RE = /^$|^[0-9a-f]{64}$/;
/** RFC 3986 URI syntax: a scheme, then unreserved, reserved and %-escaped characters only. */
export const URI_RE = /^[A-Za-z][A-Za-z0-9+.-]*:(?:[A-Za-z0-9\-._~:/?#[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})*$/;

/** `"pattern": "^[^\\0]*$"`: any text without NUL. */
const text = matching(/^[^\0]*$/, "text without NUL characters");
const origin = matching(ORIGIN_RE, "an origin name of [a-z0-9_] characters");
const originId = matching(ORIGIN_ID_RE, 'an id "<origin>:<id>" whose origin is of [a-z0-9_] characters');
const uri = matching(URI_RE, "a URI (RFC 3986, with a scheme)");
const dateTime = z.iso.datetime({
  offset: true,
  error: (iss) => `should be an RFC 3339 date-time, got ${shown(iss.input)}`,
});
/** `"type": "object"` with no properties named: free-form. */
const misc = z.record(z.string(), z.unknown());
/** `log_excerpt`: text up to 16384 characters. */
const logExcerpt = text.max(16384);

// --- $defs ---------------------------------------------------------------------------------------

export const KcidbResourceSchema = z.strictObject({
  name: matching(/^[^/\0]+$/, "a file name without / or NUL"),
  url: uri,
});
const resourceList = z.array(KcidbResourceSchema);

export const KCIDB_STATUSES = ["FAIL", "ERROR", "MISS", "PASS", "DONE", "SKIP"] as const;
export const KcidbStatusSchema = z.enum(KCIDB_STATUSES);
export type KcidbStatus = z.output<typeof KcidbStatusSchema>;

export const KcidbPathSchema = matching(PATH_RE, "a dot-separated path of [a-zA-Z0-9_-] names (or empty)");

export const KcidbCheckoutSchema = z.strictObject({
  _timestamp: dateTime.optional(),
  id: originId,
  origin,
  tree_name: text.optional(),
  git_repository_url: uri
    .regex(GIT_REPOSITORY_URL_RE, { error: (iss) => `should be an https:// URL, got ${shown(iss.input)}` })
    .optional(),
  git_commit_hash: matching(GIT_COMMIT_HASH_RE, "a full 40-digit git commit hash").optional(),
  git_commit_name: text.optional(),
  git_commit_tags: z.array(text).optional(),
  git_commit_message: text.optional(),
  git_repository_branch: text.optional(),
  git_repository_branch_tip: z.boolean().optional(),
  patchset_files: resourceList.optional(),
  patchset_hash: matching(PATCHSET_HASH_RE, "empty or a sha256 hash").optional(),
  message_id: z.email().optional(),
  comment: text.optional(),
  start_time: dateTime.optional(),
  origin_builds_finish_time: dateTime.optional(),
  origin_tests_finish_time: dateTime.optional(),
  log_url: uri.optional(),
  log_excerpt: logExcerpt.optional(),
  valid: z.boolean().optional(),
  misc: misc.optional(),
});

export const KcidbBuildSchema = z.strictObject({
  _timestamp: dateTime.optional(),
  checkout_id: originId,
  id: originId,
  origin,
  comment: text.optional(),
  start_time: dateTime.optional(),
  duration: z.number().optional(),
  architecture: matching(/^[a-z0-9_]*$/, "an architecture name of [a-z0-9_] characters").optional(),
  command: text.optional(),
  compiler: text.optional(),
  input_files: resourceList.optional(),
  output_files: resourceList.optional(),
  config_name: text.optional(),
  config_url: uri.optional(),
  log_url: uri.optional(),
  log_excerpt: logExcerpt.optional(),
  status: KcidbStatusSchema.optional(),
  misc: misc.optional(),
});

export const KcidbEnvironmentSchema = z.strictObject({
  compatible: z.array(matching(/^[^ \0]+(,[^ \0]+)*$/, "a device-tree compatible value")).optional(),
  comment: text.optional(),
  misc: misc.optional(),
});

export const KcidbNumberSchema = z.strictObject({
  value: z.number(),
  unit: text.optional(),
  prefix: z.enum(["metric", "binary"]).optional(),
});

export const KcidbTestSchema = z.strictObject({
  _timestamp: dateTime.optional(),
  build_id: originId,
  id: originId,
  origin,
  environment: KcidbEnvironmentSchema.optional(),
  path: KcidbPathSchema.optional(),
  comment: text.optional(),
  log_url: uri.optional(),
  log_excerpt: logExcerpt.optional(),
  status: KcidbStatusSchema.optional(),
  number: KcidbNumberSchema.optional(),
  start_time: dateTime.optional(),
  duration: z.number().optional(),
  input_files: resourceList.optional(),
  output_files: resourceList.optional(),
  misc: misc.optional(),
});

export const KcidbIssueSchema = z.strictObject({
  _timestamp: dateTime.optional(),
  id: originId,
  version: z.int().min(0),
  origin,
  categories: z.array(KcidbPathSchema).optional(),
  report_url: uri.optional(),
  report_subject: text.optional(),
  culprit: z
    .strictObject({
      code: z.boolean().optional(),
      tool: z.boolean().optional(),
      harness: z.boolean().optional(),
    })
    .optional(),
  comment: text.optional(),
  misc: misc.optional(),
});

export const KcidbIncidentSchema = z.strictObject({
  _timestamp: dateTime.optional(),
  id: originId,
  origin,
  issue_id: originId,
  issue_version: z.int().min(0),
  build_id: originId.optional(),
  test_id: originId.optional(),
  present: z.boolean().optional(),
  comment: text.optional(),
  misc: misc.optional(),
});

// --- The document --------------------------------------------------------------------------------

export const KcidbDocSchema = z.strictObject({
  version: z.strictObject({
    major: z.literal(KCIDB_VERSION.major),
    minor: z.int().min(0).max(KCIDB_VERSION.minor).optional(),
  }),
  checkouts: z.array(KcidbCheckoutSchema).optional(),
  builds: z.array(KcidbBuildSchema).optional(),
  tests: z.array(KcidbTestSchema).optional(),
  issues: z.array(KcidbIssueSchema).optional(),
  incidents: z.array(KcidbIncidentSchema).optional(),
});

export type KcidbDoc = z.output<typeof KcidbDocSchema>;
export type KcidbCheckout = z.output<typeof KcidbCheckoutSchema>;
export type KcidbBuild = z.output<typeof KcidbBuildSchema>;
export type KcidbTest = z.output<typeof KcidbTestSchema>;
export type KcidbResource = z.output<typeof KcidbResourceSchema>;
