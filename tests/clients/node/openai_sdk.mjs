// The official `openai` Node SDK: create, stream, and a function round trip with previous_response_id.
import OpenAI from "openai";
import { apiKey, baseURL, runMatrix, shell, TOOL_DESCRIPTION, TOOL_NAME, TOOL_SCHEMA } from "./common.mjs";

const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 60_000 });
const tools = [
  { type: "function", name: TOOL_NAME, description: TOOL_DESCRIPTION, parameters: TOOL_SCHEMA, strict: true },
];

await runMatrix((model) => ({
  async create() {
    const response = await client.responses.create({ model, input: "Say hello." });
    return { status: response.status, text: response.output_text, id: response.id };
  },
  async stream() {
    const stream = await client.responses.create({ model, input: "Say hello.", stream: true });
    let text = "";
    const types = [];
    let final = null;
    for await (const event of stream) {
      types.push(event.type);
      if (event.type === "response.output_text.delta") text += event.delta;
      if (event.type === "response.completed") final = event.response;
    }
    const finalText = (final?.output ?? [])
      .filter((item) => item.type === "message")
      .flatMap((item) => item.content.map((part) => part.text ?? ""))
      .join("");
    return { status: final?.status, text, final_text: finalText, last: types.at(-1) };
  },
  async helper_stream() {
    // The SDK's own stream helper, which rebuilds the response from the events.
    const stream = client.responses.stream({ model, input: "Say hello." });
    const final = await stream.finalResponse();
    return { status: final.status, text: final.output_text };
  },
  async tools() {
    const first = await client.responses.create({ model, input: "Run the command, then tell me what it printed.", tools });
    const calls = first.output.filter((item) => item.type === "function_call");
    const outputs = calls.map((call) => ({
      type: "function_call_output",
      call_id: call.call_id,
      output: shell(JSON.parse(call.arguments)),
    }));
    const second = await client.responses.create({ model, previous_response_id: first.id, input: outputs, tools });
    return {
      calls: calls.map((c) => ({ name: c.name, arguments: JSON.parse(c.arguments) })),
      status: second.status,
      text: second.output_text,
    };
  },
}));
