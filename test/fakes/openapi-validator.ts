import { readFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Ajv, type ErrorObject, type Options as AjvOptions, type ValidateFunction } from 'ajv';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { parse as parseYaml } from 'yaml';
import { normaliseOpenApiSchemas } from './openapi-schema-dialect.js';

/**
 * Checks requests that reach a provider fake against the provider's own OpenAPI document, so a
 * fake can never accept what the real API would refuse (a misspelt parameter, a missing `To`, a
 * chat message with a role OpenAI does not have). Each fake passes `validator.check` to
 * `startFakeServer({ check })`; every problem becomes a violation that fails the test.
 *
 * What is checked: the operation exists (method + path template); path, query and header
 * parameters match their schemas; the body matches the operation's `requestBody` for its
 * Content-Type (`application/json` parsed as JSON, `application/x-www-form-urlencoded` parsed as a
 * form whose string values are coerced to the declared types). Query parameters the operation does
 * not declare are reported too: the real API ignores them, which hides a client bug. Formats are
 * not checked (Twilio's `phone-number`, `date-time-rfc-2822` have no standard definition, and
 * ajv-formats is not installed). Other body types (multipart uploads) are checked only for being a
 * declared Content-Type.
 *
 * The specs are large (Twilio 1.9 MB JSON, OpenAI 3 MB YAML), so each operation's validators are
 * compiled on first use and kept.
 */

export interface CheckedRequest {
  method: string;
  /** Path without the query string, as it reached the fake. */
  path: string;
  query: URLSearchParams;
  headers: Record<string, string | string[] | undefined>;
  rawBody: Buffer;
}

export interface OpenApiValidator {
  /** Problems with this request against the spec; [] when it conforms. */
  check(request: CheckedRequest): string[];
}

export interface OpenApiValidatorOptions {
  /**
   * The part of the path before the spec's path templates (the path of the API's base URL).
   * Defaults to the path of the spec's first `servers` entry.
   */
  serverPathPrefix?: string;
}

export function loadOpenApiValidator(specPath: string, options: OpenApiValidatorOptions = {}): OpenApiValidator {
  const document = readSpec(specPath);
  normaliseOpenApiSchemas(document);
  return new SpecValidator(document, pathToFileURL(specPath).href, options.serverPathPrefix ?? firstServerPath(document));
}

/**
 * The official documents, copied unchanged (with their MIT licences) into test/fixtures/specs so
 * a fresh clone checks against them; found from this file, not from the working directory.
 */
const SPECS_DIR = fileURLToPath(new URL('../fixtures/specs/', import.meta.url));

let twilioValidator: OpenApiValidator | undefined;
let openAiValidator: OpenApiValidator | undefined;

/** Twilio's REST API 2010-04-01 (https://github.com/twilio/twilio-oai, `twilio_api_v2010.json`). */
export function twilioSpecValidator(): OpenApiValidator {
  twilioValidator ??= loadOpenApiValidator(`${SPECS_DIR}twilio_api_v2010.json`, { serverPathPrefix: '' });
  return twilioValidator;
}

/**
 * OpenAI's API (https://github.com/openai/openai-openapi). The spec's server is
 * `https://api.openai.com/v1` and the SDK calls `${baseURL}/chat/completions` with a baseURL that
 * ends in `/v1`, so the fake sees `/v1/chat/completions` for the template `/chat/completions`.
 */
export function openAiSpecValidator(): OpenApiValidator {
  openAiValidator ??= loadOpenApiValidator(`${SPECS_DIR}openai_openapi.yaml`, { serverPathPrefix: '/v1' });
  return openAiValidator;
}

type JsonObject = Record<string, unknown>;

const HTTP_METHODS = new Set(['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace']);

/** Per operation, at most this many schema errors are listed; a union's misses can run to dozens. */
const MAX_ERRORS_PER_PART = 20;

interface PathRoute {
  /** The key under `paths`, e.g. `/2010-04-01/Accounts/{AccountSid}/Messages.json`. */
  template: string;
  pattern: RegExp;
  parameterNames: string[];
  /**
   * A few OpenAI path keys carry a query, e.g. `/responses?beta=true`: the operation applies only
   * when the request has those query values.
   */
  fixedQuery: [string, string][];
  /** Used to prefer `/files/{id}` style templates with more literal text when two match. */
  literalLength: number;
  item: JsonObject;
}

interface Parameter {
  name: string;
  in: 'path' | 'query' | 'header' | 'cookie';
  required: boolean;
  style: string | undefined;
  schema: unknown;
}

type PartValidator = (value: unknown) => string[];

interface OperationValidator {
  pathParameters: PartValidator;
  queryParameters: Parameter[];
  query: PartValidator;
  headerParameters: Parameter[];
  headers: PartValidator;
  fixedQueryNames: Set<string>;
  /** Undefined when the operation takes no body. */
  body: { required: boolean; contentTypes: Map<string, PartValidator | undefined> } | undefined;
}

class SpecValidator implements OpenApiValidator {
  private readonly routes: PathRoute[];
  private readonly operations = new Map<string, OperationValidator>();
  private readonly ajvFactory: (coerceWireStrings: boolean) => Ajv;
  private wireAjv: Ajv | undefined;
  private jsonAjv: Ajv | undefined;

  constructor(
    private readonly document: JsonObject,
    private readonly specId: string,
    private readonly serverPathPrefix: string,
  ) {
    this.routes = Object.entries(asObject(document['paths']) ?? {}).map(([template, item]) => buildRoute(template, asObject(item) ?? {}));
    const is31 = String(document['openapi'] ?? '').startsWith('3.1');
    this.ajvFactory = (coerceWireStrings) => {
      const options: AjvOptions = {
        // OpenAPI keywords (discriminator, example, x-*) are not JSON Schema: ignore, don't refuse.
        strict: false,
        validateFormats: false,
        validateSchema: false,
        allErrors: true,
        // Path, query, header and form values are strings on the wire; a repeated form key is how
        // Twilio sends arrays (MediaUrl=a&MediaUrl=b), and one key is a one-element array.
        coerceTypes: coerceWireStrings ? 'array' : false,
      };
      const ajv = is31 ? new Ajv2020(options) : new Ajv(options);
      // Registered once under the spec's URL: `#/components/...` refs inside it resolve in place.
      ajv.addSchema(this.document, this.specId);
      return ajv;
    };
  }

  check(request: CheckedRequest): string[] {
    const method = request.method.toLowerCase();
    const where = `${request.method.toUpperCase()} ${request.path}`;
    const underPrefix = this.serverPathPrefix === '' || request.path === this.serverPathPrefix || request.path.startsWith(`${this.serverPathPrefix}/`);
    if (!underPrefix) return [`${where}: path is outside the API base path ${this.serverPathPrefix}`];
    const specPath = request.path.slice(this.serverPathPrefix.length) || '/';
    const matching = this.routes
      .map((route) => ({ route, match: route.pattern.exec(specPath) }))
      .filter(({ route, match }) => match !== null && route.fixedQuery.every(([name, value]) => request.query.getAll(name).includes(value)));
    if (matching.length === 0) return [`${where}: no path in the spec matches`];
    const withMethod = matching.filter(({ route }) => route.item[method] !== undefined && HTTP_METHODS.has(method));
    if (withMethod.length === 0) return [`${where}: method not in the spec for ${matching.map(({ route }) => route.template).join(', ')}`];
    withMethod.sort((a, b) => b.route.fixedQuery.length - a.route.fixedQuery.length || b.route.literalLength - a.route.literalLength);
    const { route, match } = withMethod[0]!;

    const label = `${method.toUpperCase()} ${route.template}`;
    try {
      const operation = this.operationValidator(route, method);
      const problems = [
        ...this.checkPath(operation, route, match!),
        ...checkQuery(operation, request.query),
        ...operation.headers(headerValues(operation.headerParameters, request.headers)),
        ...checkBody(operation, request.headers['content-type'], request.rawBody),
      ];
      return problems.map((problem) => `${label}: ${problem}`);
    } catch (error) {
      // A schema Ajv cannot compile is a gap in this checker, not a pass: report it, don't crash the fake.
      return [`${label}: the spec's schemas for this operation could not be compiled: ${(error as Error).message}`];
    }
  }

  private checkPath(operation: OperationValidator, route: PathRoute, match: RegExpExecArray): string[] {
    const values: JsonObject = {};
    for (const [index, name] of route.parameterNames.entries()) {
      const raw = match[index + 1] ?? '';
      try {
        values[name] = decodeURIComponent(raw);
      } catch {
        return [`path parameter ${name} is not valid percent-encoding`];
      }
    }
    return operation.pathParameters(values);
  }

  private operationValidator(route: PathRoute, method: string): OperationValidator {
    const key = `${method} ${route.template}`;
    let operation = this.operations.get(key);
    if (!operation) {
      operation = this.compileOperation(route, method);
      this.operations.set(key, operation);
    }
    return operation;
  }

  private compileOperation(route: PathRoute, method: string): OperationValidator {
    const operationObject = asObject(route.item[method]) ?? {};
    const parameters = this.parametersOf(route.item, operationObject);
    const byLocation = (location: Parameter['in']) => parameters.filter((parameter) => parameter.in === location);
    const fixedQueryNames = new Set(route.fixedQuery.map(([name]) => name));
    const queryParameters = byLocation('query').filter((parameter) => !fixedQueryNames.has(parameter.name));
    const headerParameters = byLocation('header');
    return {
      pathParameters: this.parametersValidator(byLocation('path'), 'path parameter'),
      queryParameters,
      query: this.parametersValidator(queryParameters, 'query parameter'),
      headerParameters,
      headers: this.parametersValidator(headerParameters, 'header'),
      fixedQueryNames,
      body: this.bodyValidator(operationObject['requestBody']),
    };
  }

  /** Path-item parameters apply to every operation; an operation's own one of the same name wins. */
  private parametersOf(item: JsonObject, operationObject: JsonObject): Parameter[] {
    const byKey = new Map<string, Parameter>();
    for (const list of [item['parameters'], operationObject['parameters']]) {
      if (!Array.isArray(list)) continue;
      for (const entry of list) {
        const parameter = asObject(this.resolve(entry)) ?? {};
        const location = parameter['in'];
        if (typeof parameter['name'] !== 'string' || (location !== 'path' && location !== 'query' && location !== 'header' && location !== 'cookie')) continue;
        byKey.set(`${location} ${parameter['name']}`, {
          name: parameter['name'],
          in: location,
          // Path parameters are always required (https://spec.openapis.org/oas/v3.1.0#fixed-fields-9).
          required: parameter['required'] === true || location === 'path',
          style: typeof parameter['style'] === 'string' ? parameter['style'] : undefined,
          schema: parameter['schema'] ?? {},
        });
      }
    }
    return [...byKey.values()];
  }

  private parametersValidator(parameters: Parameter[], label: string): PartValidator {
    let validate: ValidateFunction | undefined;
    return (value) => {
      validate ??= this.wire().compile({
        type: 'object',
        properties: Object.fromEntries(parameters.map((parameter) => [parameter.name, this.absoluteRefs(parameter.schema)])),
        required: parameters.filter((parameter) => parameter.required).map((parameter) => parameter.name),
      });
      if (validate(value)) return [];
      return formatErrors(validate.errors, (instancePath) => {
        const [, name = '', ...rest] = instancePath.split('/');
        return name === '' ? label.replace(/ parameter$/, '') + ' parameters' : `${label} ${unescapePointer(name)}${rest.map((segment) => `/${segment}`).join('')}`;
      });
    };
  }

  private bodyValidator(requestBodyReference: unknown): OperationValidator['body'] {
    const requestBody = asObject(this.resolve(requestBodyReference));
    if (!requestBody) return undefined;
    const contentTypes = new Map<string, PartValidator | undefined>();
    for (const [contentType, mediaType] of Object.entries(asObject(requestBody['content']) ?? {})) {
      const schema = asObject(mediaType)?.['schema'];
      const mime = contentType.toLowerCase();
      if (schema === undefined || (mime !== 'application/json' && mime !== 'application/x-www-form-urlencoded')) {
        contentTypes.set(mime, undefined);
        continue;
      }
      let validate: ValidateFunction | undefined;
      contentTypes.set(mime, (value) => {
        validate ??= (mime === 'application/json' ? this.json() : this.wire()).compile(this.absoluteRefs(schema) as JsonObject);
        if (validate(value)) return [];
        return formatErrors(validate.errors, (instancePath) => `body${instancePath}`);
      });
    }
    return { required: requestBody['required'] === true, contentTypes };
  }

  /** Follows a `$ref` to an OpenAPI object (a parameter, a request body) inside this document. */
  private resolve(value: unknown): unknown {
    let current = value;
    for (let hops = 0; hops < 10; hops += 1) {
      const reference = asObject(current)?.['$ref'];
      if (typeof reference !== 'string' || !reference.startsWith('#/')) return current;
      current = reference
        .slice(2)
        .split('/')
        .reduce<unknown>((node, segment) => asObject(node)?.[unescapePointer(decodeURIComponent(segment))], this.document);
    }
    return current;
  }

  /**
   * A copy of a schema taken out of the document, with its local refs (`#/components/...`) made
   * absolute so that they still point into the registered document.
   */
  private absoluteRefs(schema: unknown): unknown {
    if (Array.isArray(schema)) return schema.map((item) => this.absoluteRefs(item));
    const object = asObject(schema);
    if (!object) return schema;
    return Object.fromEntries(
      Object.entries(object).map(([key, value]) => [
        key,
        key === '$ref' && typeof value === 'string' && value.startsWith('#') ? `${this.specId}${value}` : DATA_KEYWORDS.has(key) ? value : this.absoluteRefs(value),
      ]),
    );
  }

  private wire(): Ajv {
    this.wireAjv ??= this.ajvFactory(true);
    return this.wireAjv;
  }

  private json(): Ajv {
    this.jsonAjv ??= this.ajvFactory(false);
    return this.jsonAjv;
  }
}

/** Values inside these keywords are data: a `$ref` key there is not a reference. */
const DATA_KEYWORDS = new Set(['example', 'examples', 'default', 'enum', 'const']);

function checkQuery(operation: OperationValidator, query: URLSearchParams): string[] {
  const problems: string[] = [];
  const values: JsonObject = {};
  const declared = new Map(operation.queryParameters.map((parameter) => [parameter.name, parameter]));
  for (const name of new Set(query.keys())) {
    if (operation.fixedQueryNames.has(name)) continue;
    const all = query.getAll(name);
    const parameter = declared.get(name);
    if (parameter) {
      values[name] = all.length === 1 ? all[0] : all;
      continue;
    }
    // Bracket notation: OpenAPI's deepObject style (`metadata[key]=value`,
    // https://spec.openapis.org/oas/v3.1.0#style-values), which the OpenAI SDK also uses for every
    // object and array (qs `arrayFormat: 'brackets'`, openai/internal/utils/query.js).
    const bracketed = /^([^[\]]+)\[([^[\]]*)\]$/.exec(name);
    const owner = bracketed ? declared.get(bracketed[1]!) : undefined;
    if (bracketed && owner) {
      const key = bracketed[2]!;
      if (key === '') {
        values[owner.name] = all;
      } else {
        const object = asObject(values[owner.name]) ?? {};
        object[key] = all.length === 1 ? all[0] : all;
        values[owner.name] = object;
      }
      continue;
    }
    problems.push(`query parameter ${name} is not declared by the operation`);
  }
  return [...problems, ...operation.query(values)];
}

/** Header parameters are looked up case-insensitively; `simple` style arrays are comma-separated. */
function headerValues(parameters: Parameter[], headers: CheckedRequest['headers']): JsonObject {
  const lowerCased = new Map(Object.entries(headers).map(([name, value]) => [name.toLowerCase(), value]));
  const values: JsonObject = {};
  for (const parameter of parameters) {
    const value = lowerCased.get(parameter.name.toLowerCase());
    if (value === undefined) continue;
    const joined = Array.isArray(value) ? value.join(',') : value;
    values[parameter.name] = asObject(parameter.schema)?.['type'] === 'array' ? joined.split(',').map((item) => item.trim()) : joined;
  }
  return values;
}

function checkBody(operation: OperationValidator, contentTypeHeader: string | string[] | undefined, rawBody: Buffer): string[] {
  const { body } = operation;
  if (!body) return rawBody.length > 0 ? [`the operation takes no request body, got ${rawBody.length} bytes`] : [];
  if (rawBody.length === 0) return body.required ? ['request body is required'] : [];
  const mime = String(Array.isArray(contentTypeHeader) ? contentTypeHeader[0] : (contentTypeHeader ?? ''))
    .split(';')[0]!
    .trim()
    .toLowerCase();
  if (!body.contentTypes.has(mime)) return [`Content-Type "${mime}" is not one of ${[...body.contentTypes.keys()].join(', ')}`];
  const validate = body.contentTypes.get(mime);
  if (!validate) return [];
  if (mime === 'application/x-www-form-urlencoded') return validate(parseForm(rawBody));
  let parsed: unknown;
  try {
    parsed = JSON.parse(rawBody.toString('utf8'));
  } catch {
    return ['body is not valid JSON'];
  }
  return validate(parsed);
}

/** A form as an object: one value stays a string, a repeated key becomes an array. */
function parseForm(rawBody: Buffer): JsonObject {
  const form = new URLSearchParams(rawBody.toString('utf8'));
  const values: JsonObject = {};
  for (const name of new Set(form.keys())) {
    const all = form.getAll(name);
    values[name] = all.length === 1 ? all[0] : all;
  }
  return values;
}

/** Ajv's errors as readable lines. They name schema rules and allowed values, never the request's data. */
function formatErrors(errors: ErrorObject[] | null | undefined, locate: (instancePath: string) => string): string[] {
  const lines = new Set<string>();
  for (const error of errors ?? []) {
    const params = error.params as Record<string, unknown>;
    let detail = '';
    if (error.keyword === 'additionalProperties') detail = ` '${String(params['additionalProperty'])}'`;
    else if (error.keyword === 'enum') detail = ` (${(params['allowedValues'] as unknown[]).map((value) => JSON.stringify(value)).join(', ')})`;
    else if (error.keyword === 'const') detail = ` (${JSON.stringify(params['allowedValue'])})`;
    lines.add(`${locate(error.instancePath)} ${error.message ?? error.keyword}${detail}`);
  }
  const all = [...lines];
  return all.length > MAX_ERRORS_PER_PART ? [...all.slice(0, MAX_ERRORS_PER_PART), `... and ${all.length - MAX_ERRORS_PER_PART} more`] : all;
}

function buildRoute(key: string, item: JsonObject): PathRoute {
  const [template = key, fixedQueryString = ''] = key.split('?');
  const parameterNames: string[] = [];
  let literalLength = 0;
  const source = template
    .split(/(\{[^}]+\})/)
    .map((part) => {
      const parameter = /^\{([^}]+)\}$/.exec(part);
      if (parameter) {
        parameterNames.push(parameter[1]!);
        return '([^/]+)';
      }
      literalLength += part.length;
      return part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    })
    .join('');
  return { template: key, pattern: new RegExp(`^${source}$`), parameterNames, fixedQuery: [...new URLSearchParams(fixedQueryString)], literalLength, item };
}

function readSpec(specPath: string): JsonObject {
  const text = readFileSync(specPath, 'utf8');
  const parsed: unknown = /\.ya?ml$/i.test(specPath) ? parseYaml(text, { maxAliasCount: -1 }) : JSON.parse(text);
  const document = asObject(parsed);
  if (!document || typeof document['paths'] !== 'object') throw new Error(`${specPath} is not an OpenAPI document`);
  return document;
}

function firstServerPath(document: JsonObject): string {
  const servers = document['servers'];
  const url = Array.isArray(servers) ? asObject(servers[0])?.['url'] : undefined;
  if (typeof url !== 'string') return '';
  return new URL(url, 'http://server.invalid').pathname.replace(/\/+$/, '');
}

function unescapePointer(segment: string): string {
  return segment.replaceAll('~1', '/').replaceAll('~0', '~');
}

function asObject(value: unknown): JsonObject | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as JsonObject) : undefined;
}
