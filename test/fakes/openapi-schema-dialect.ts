/**
 * Rewrites the schema dialect of an OpenAPI document into plain JSON Schema that Ajv validates as
 * the document's authors meant it. Both provider specs use OpenAPI-only forms that Ajv either
 * rejects at compile time or reads differently:
 *
 * - `nullable: true` (OpenAPI 3.0, https://spec.openapis.org/oas/v3.0.3#fixed-fields-19). Ajv knows
 *   the keyword only next to `type`; the specs also put it beside `$ref`, `oneOf`, `anyOf` and as a
 *   lone `allOf` member (`allOf: [{$ref: X}, {nullable: true}]`, meaning "X or null"). OpenAI's
 *   document says 3.1 but still uses it 109 times, so it is rewritten in both.
 * - boolean `exclusiveMinimum`/`exclusiveMaximum` (JSON Schema draft 4, kept by OpenAPI 3.0), found
 *   in OpenAI's 3.1 document: Ajv's 2020-12 dialect wants numbers there.
 * - `$recursiveRef: "#"` (draft 2019-09), found in OpenAI's CompoundFilter: Ajv's 2020-12 dialect
 *   does not know it, and inside one big document "#" would be the whole OpenAPI file, so it becomes
 *   a `$ref` to the component schema that holds it (what the authors meant: a filter of filters).
 *
 * The document is changed in place. Values that are data, not schemas (`example`, `examples`,
 * `default`, `enum`, `const`), are left alone.
 */

type JsonObject = Record<string, unknown>;

export function normaliseOpenApiSchemas(document: JsonObject): void {
  const components = asObject(document['components']);
  for (const [name, schema] of Object.entries(asObject(components?.['schemas']) ?? {})) {
    walkSchema(schema, `#/components/schemas/${escapePointerSegment(name)}`);
  }
  // Everywhere else (parameters, inline request bodies, responses) a schema sits under a `schema` key.
  for (const [key, value] of Object.entries(document)) {
    if (key !== 'components') walkOpenApiObject(value);
  }
  for (const [key, value] of Object.entries(components ?? {})) {
    if (key !== 'schemas') walkOpenApiObject(value);
  }
}

/** Keywords whose values are data, never schemas or OpenAPI objects. */
const DATA_KEYWORDS = new Set(['example', 'examples', 'default', 'enum', 'const']);

/** Keywords that describe a schema without constraining the data. */
const ANNOTATION_KEYWORDS = new Set(['title', 'description', 'default', 'example', 'examples', 'deprecated', 'readOnly', 'writeOnly', 'externalDocs', 'xml', 'discriminator', '$comment']);

/** Keywords that, beside `type`, make a plain `type: [T, "null"]` union wrong or unclear. */
const COMBINING_KEYWORDS = ['$ref', 'allOf', 'anyOf', 'oneOf', 'not', 'enum', 'const', 'if'];

/** Where JSON Schema keeps subschemas: one schema, a list of them, or a map of them by name. */
const SUBSCHEMA_KEYWORDS = ['items', 'additionalItems', 'additionalProperties', 'not', 'contains', 'propertyNames', 'if', 'then', 'else', 'unevaluatedItems', 'unevaluatedProperties'];
const SUBSCHEMA_LIST_KEYWORDS = ['allOf', 'anyOf', 'oneOf', 'prefixItems', 'items'];
const SUBSCHEMA_MAP_KEYWORDS = ['properties', 'patternProperties', '$defs', 'definitions', 'dependentSchemas'];

/** Walks OpenAPI objects (paths, operations, media types) looking for the schemas inside them. */
function walkOpenApiObject(value: unknown): void {
  if (Array.isArray(value)) {
    for (const item of value) walkOpenApiObject(item);
    return;
  }
  const object = asObject(value);
  if (!object) return;
  for (const [key, child] of Object.entries(object)) {
    if (key === 'schema') walkSchema(child, undefined);
    else if (!DATA_KEYWORDS.has(key)) walkOpenApiObject(child);
  }
}

function walkSchema(value: unknown, componentRef: string | undefined): void {
  const node = asObject(value);
  if (!node) return;
  liftNullableAllOfMember(node);
  rewriteBooleanExclusiveBounds(node);
  rewriteRecursiveRef(node, componentRef);
  rewriteNullable(node);
  for (const key of SUBSCHEMA_KEYWORDS) walkSchema(node[key], componentRef);
  for (const key of SUBSCHEMA_LIST_KEYWORDS) {
    const list = node[key];
    if (Array.isArray(list)) for (const item of list) walkSchema(item, componentRef);
  }
  for (const key of SUBSCHEMA_MAP_KEYWORDS) {
    for (const child of Object.values(asObject(node[key]) ?? {})) walkSchema(child, componentRef);
  }
}

/** `allOf: [{$ref: X}, {nullable: true}]` means "X or null": move the flag to the parent. */
function liftNullableAllOfMember(node: JsonObject): void {
  const allOf = node['allOf'];
  if (!Array.isArray(allOf)) return;
  const isNullableOnly = (member: unknown): boolean => {
    const object = asObject(member);
    return object !== undefined && object['nullable'] === true && Object.keys(object).every((key) => key === 'nullable' || isAnnotation(key));
  };
  if (!allOf.some(isNullableOnly)) return;
  node['allOf'] = allOf.filter((member) => !isNullableOnly(member));
  node['nullable'] = true;
}

function rewriteBooleanExclusiveBounds(node: JsonObject): void {
  for (const [exclusive, inclusive] of [['exclusiveMinimum', 'minimum'], ['exclusiveMaximum', 'maximum']] as const) {
    if (typeof node[exclusive] !== 'boolean') continue;
    if (node[exclusive] === true && typeof node[inclusive] === 'number') {
      node[exclusive] = node[inclusive];
      delete node[inclusive];
    } else {
      delete node[exclusive];
    }
  }
}

function rewriteRecursiveRef(node: JsonObject, componentRef: string | undefined): void {
  if (node['$recursiveRef'] !== '#' || componentRef === undefined) return;
  delete node['$recursiveRef'];
  node['$ref'] = componentRef;
}

function rewriteNullable(node: JsonObject): void {
  if (!('nullable' in node)) return;
  const nullable = node['nullable'] === true;
  delete node['nullable'];
  if (!nullable) return;
  const constraintKeys = Object.keys(node).filter((key) => !isAnnotation(key));
  if (constraintKeys.length === 0) return; // already accepts anything, null included
  const type = node['type'];
  const hasCombiner = COMBINING_KEYWORDS.some((key) => key in node);
  if (type !== undefined && !hasCombiner) {
    const types = Array.isArray(type) ? type : [type];
    if (!types.includes('null')) node['type'] = [...types, 'null'];
    return;
  }
  // Anything else: "null, or whatever the rest of this schema says".
  const rest: JsonObject = {};
  for (const key of constraintKeys) {
    rest[key] = node[key];
    delete node[key];
  }
  node['anyOf'] = [{ type: 'null' }, rest];
}

function isAnnotation(key: string): boolean {
  return ANNOTATION_KEYWORDS.has(key) || key.startsWith('x-');
}

function asObject(value: unknown): JsonObject | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as JsonObject) : undefined;
}

function escapePointerSegment(segment: string): string {
  return segment.replaceAll('~', '~0').replaceAll('/', '~1');
}
