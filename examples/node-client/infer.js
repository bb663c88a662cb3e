#!/usr/bin/env node
// Score rows with an onyxserve model from Node.js: the .proto is loaded at run time
// (@grpc/proto-loader), so there is no generated code to keep in sync.
//
//   node infer.js TARGET MODEL [--rows rows.json] [--timeout-ms 10000]
//
// TARGET is host:port or unix:///path/to.sock. rows.json holds an array of rows, each an array
// of the model's features in manifest order (ModelMetadata tells how many). Without --rows, three
// deterministic rows are sent. Prints one JSON object on stdout:
//   {"model": ..., "version": ..., "outputs": {"label": [...], "probabilities": [[...], ...]}}
// and exits 1 with one line on stderr if anything fails.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const PROTO = process.env.ONYXSERVE_PROTO || path.join(__dirname, '..', '..', 'protos', 'grpc_service.proto');

function loadService() {
  const definition = protoLoader.loadSync(PROTO, {
    keepCase: true, // field names as in the .proto: raw_input_contents, not rawInputContents
    longs: String, // int64 shapes arrive as strings; Number() them where needed
    enums: String,
    defaults: true,
    oneofs: true,
  });
  return grpc.loadPackageDefinition(definition).inference.GRPCInferenceService;
}

// Promise wrapper for one unary call with a deadline.
function call(client, method, request, timeoutMs) {
  const deadline = new Date(Date.now() + timeoutMs);
  return new Promise((resolve, reject) => {
    client[method](request, { deadline }, (err, response) => (err ? reject(err) : resolve(response)));
  });
}

// V2 raw contents are little-endian; copy into an aligned ArrayBuffer before viewing it.
function decodeRaw(datatype, buf) {
  const aligned = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
  switch (datatype) {
    case 'FP32': return Array.from(new Float32Array(aligned));
    case 'FP64': return Array.from(new Float64Array(aligned));
    case 'INT32': return Array.from(new Int32Array(aligned));
    case 'INT64': return Array.from(new BigInt64Array(aligned), Number);
    case 'BYTES': { // each element: 4-byte little-endian length, then the bytes
      const out = [];
      for (let i = 0; i < buf.length;) {
        const n = buf.readUInt32LE(i);
        out.push(buf.subarray(i + 4, i + 4 + n).toString('utf8'));
        i += 4 + n;
      }
      return out;
    }
    default: throw new Error(`no decoder for ${datatype}`);
  }
}

// [N, C] outputs come back flat; give them their rows again.
function reshape(values, shape) {
  const dims = shape.map(Number);
  if (dims.length < 2) return values;
  const width = dims.slice(1).reduce((a, b) => a * b, 1);
  const rows = [];
  for (let i = 0; i < values.length; i += width) rows.push(values.slice(i, i + width));
  return rows;
}

function defaultRows(features) {
  return [0, 1, 2].map((r) => Array.from({ length: features }, (_, j) => Math.sin(7 * r + j) * (j === 0 ? 1000 : 2)));
}

function parseArgs(argv) {
  const args = { rows: null, timeoutMs: 10000, positional: [] };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--rows') args.rows = argv[++i];
    else if (argv[i] === '--timeout-ms') args.timeoutMs = Number(argv[++i]);
    else args.positional.push(argv[i]);
  }
  if (args.positional.length !== 2 || !(args.timeoutMs > 0)) {
    throw new Error('usage: node infer.js TARGET MODEL [--rows rows.json] [--timeout-ms N]');
  }
  return args;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const [target, model] = args.positional;
  const Service = loadService();
  const client = new Service(target, grpc.credentials.createInsecure());
  try {
    const { ready } = await call(client, 'ServerReady', {}, args.timeoutMs);
    if (!ready) throw new Error(`${target} is not ready`);

    const meta = await call(client, 'ModelMetadata', { name: model }, args.timeoutMs);
    if (meta.inputs.length !== 1 || meta.inputs[0].shape.length !== 2) {
      throw new Error(`${model} takes ${meta.inputs.length} inputs; this example sends one [N, F] tensor`);
    }
    const input = meta.inputs[0];
    const features = Number(input.shape[1]);
    const rows = args.rows ? JSON.parse(fs.readFileSync(args.rows, 'utf8')) : defaultRows(features);
    const bad = rows.findIndex((row) => row.length !== features);
    if (bad >= 0) throw new Error(`row ${bad} has ${rows[bad].length} values; ${model} wants ${features}`);

    // Float32Array -> Buffer: the tensor's bytes, row-major, sent as raw_input_contents.
    const tensor = new Float32Array(rows.flat());
    const response = await call(client, 'ModelInfer', {
      model_name: model,
      inputs: [{ name: input.name, datatype: 'FP32', shape: [rows.length, features] }],
      raw_input_contents: [Buffer.from(tensor.buffer, tensor.byteOffset, tensor.byteLength)],
    }, args.timeoutMs);

    const outputs = {};
    response.outputs.forEach((out, i) => {
      outputs[out.name] = reshape(decodeRaw(out.datatype, response.raw_output_contents[i]), out.shape);
    });
    console.log(JSON.stringify({ model: response.model_name, version: response.model_version, outputs }));
  } finally {
    client.close();
  }
}

main().catch((err) => {
  // a gRPC error carries its status code; name it the way the server and the Python client do
  const status = err.code !== undefined ? `${grpc.status[err.code]}: ${err.details}` : err.message;
  console.error(`infer.js: ${status}`);
  process.exit(1);
});
