// Shared by the client scripts: what to call comes from the environment,
// every result goes to stdout as one JSON line, for
// tests/integration/test_clients.py.
//   LLMR_BASE_URL  llmroute's OpenAI base URL, e.g. http://127.0.0.1:4000/v1
//                  (the Azure script takes the root, without /v1)
//   LLMR_API_KEY   the client's key (llmroute's master_key)
//   LLMR_MODEL     the model group (Azure: the deployment name)
export const env = {
  baseURL: process.env.LLMR_BASE_URL,
  apiKey: process.env.LLMR_API_KEY || "sk-none",
  model: process.env.LLMR_MODEL || "gpt-4o",
};

// What an SDK error carries that a test asserts on: its class, the HTTP
// status and OpenAI's error code as the SDK parsed them.
function thrown(e) {
  return {
    name: e?.constructor?.name,
    status: e?.status ?? e?.statusCode ?? null,
    code: e?.code ?? e?.error?.code ?? null,
    type: e?.type ?? e?.error?.type ?? null,
    message: String(e?.message ?? e),
    retryAfter: e?.headers?.get?.("retry-after") ?? e?.headers?.["retry-after"] ?? null,
  };
}

// Runs cases[argv[2]]; prints {"result": ...} or {"thrown": ...}.  A case
// that throws is a result too (the error tests expect one); an unknown case
// or a missing base URL exits 2.
export async function main(cases) {
  const name = process.argv[2];
  if (!env.baseURL || !(name in cases)) {
    console.error(`usage: LLMR_BASE_URL=... node ${process.argv[1]} ${Object.keys(cases).join("|")}`);
    process.exit(2);
  }
  let out;
  try {
    out = { result: await cases[name]() };
  } catch (e) {
    out = { thrown: thrown(e) };
  }
  process.stdout.write(JSON.stringify(out) + "\n");
}
