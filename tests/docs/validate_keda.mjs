// Validate KEDA objects against the CRD schemas of the npm package @kubernetes-models/keda
// (2.x, ES modules; it checks types, required fields and enums such as podIdentity's
// provider and identityOwner; like the CRDs themselves, it does not refuse unknown fields).
// usage: node validate_keda.mjs NODE_MODULES_DIR < objects.json   (a JSON array of objects)
// Prints "ok KIND/NAME" or "FAIL KIND/NAME: why" per object; exits 1 if any failed.
import { readFileSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const modules = process.argv[2];
const objects = JSON.parse(readFileSync(0, "utf8"));
let failed = 0;
for (const object of objects) {
  const name = `${object.kind}/${(object.metadata || {}).name}`;
  const [group, version] = String(object.apiVersion).split("/");
  const file = path.join(modules, "@kubernetes-models/keda", group, version, `${object.kind}.js`);
  let Model;
  try {
    Model = (await import(pathToFileURL(file).href))[object.kind];
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
