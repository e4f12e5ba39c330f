// Validate KEDA objects against the CRD schemas of the npm package @kubernetes-models/keda.
// usage: node validate_keda.js NODE_MODULES_DIR < objects.json   (a JSON array of objects)
// Prints "ok KIND/NAME" or "FAIL KIND/NAME: why" per object; exits 1 if any failed.
"use strict";
const path = require("path");
const modules = process.argv[2];
const objects = JSON.parse(require("fs").readFileSync(0, "utf8"));
let failed = 0;
for (const object of objects) {
  const name = `${object.kind}/${(object.metadata || {}).name}`;
  const [group, version] = String(object.apiVersion).split("/");
  let Model;
  try {
    const file = path.join(modules, "@kubernetes-models/keda", group, version, object.kind);
    Model = require(file)[object.kind];
  } catch (err) {
    console.log(`FAIL ${name}: no KEDA schema for ${object.apiVersion} ${object.kind}`);
    failed++;
    continue;
  }
  try {
    new Model(object).validate();
    console.log(`ok ${name}`);
  } catch (err) {
    console.log(`FAIL ${name}: ${err.message}`);
    failed++;
  }
}
process.exit(failed ? 1 : 0);
