// The OpenAI Node SDK's AzureOpenAI class pointed at llmroute, unchanged:
//   new AzureOpenAI({ endpoint: "http://llmroute:4000", apiKey, apiVersion, deployment })
// It calls {endpoint}/openai/deployments/{deployment}/...?api-version=V with
// an api-key header; llmroute takes the deployment name as the model group.
// LLMR_BASE_URL is llmroute's root here (no /v1), LLMR_MODEL the deployment.
import { AzureOpenAI } from "openai";
import { env, main } from "./common.mjs";

const client = new AzureOpenAI({ endpoint: env.baseURL, apiKey: env.apiKey,
                                 apiVersion: "2024-10-21", deployment: env.model,
                                 maxRetries: 0 });
const messages = [{ role: "user", content: "hello from AzureOpenAI" }];

await main({
  async chat() {
    const r = await client.chat.completions.create({ model: env.model, messages });
    return { model: r.model, content: r.choices[0].message.content, usage: r.usage };
  },
  async stream() {
    const s = await client.chat.completions.create({ model: env.model, messages,
                                                     stream: true });
    let content = "", chunks = 0;
    for await (const c of s) {
      chunks++;
      for (const ch of c.choices) content += ch.delta?.content ?? "";
    }
    return { content, chunks };
  },
  async embeddings() {
    const r = await client.embeddings.create({ model: env.model, input: "embed me",
                                              encoding_format: "float" });
    return { count: r.data.length, embedding: r.data[0].embedding };
  },
});
