// SchemaInfo, as qapi/introspect.json defines it: what `query-qmp-schema` returns, one entity per
// command, event and type. Introspection hides type names: every non-builtin type is named by a
// meaningless number ("140") and all integer types collapse to the builtin "int".

/** JSONType: the wire type of a builtin. */
export type JSONType =
  | "string"
  | "number"
  | "int"
  | "boolean"
  | "null"
  | "object"
  | "array"
  | "value";

interface SchemaInfoBase {
  name: string;
  features?: string[];
}

export interface SchemaInfoBuiltin extends SchemaInfoBase {
  "meta-type": "builtin";
  "json-type": JSONType;
}

export interface SchemaInfoEnumMember {
  name: string;
  features?: string[];
}

export interface SchemaInfoEnum extends SchemaInfoBase {
  "meta-type": "enum";
  /** Since 6.2; `values` is deprecated from then on and may disappear. */
  members?: SchemaInfoEnumMember[];
  values?: string[];
}

export interface SchemaInfoArray extends SchemaInfoBase {
  "meta-type": "array";
  "element-type": string;
}

export interface SchemaInfoObjectMember {
  name: string;
  type: string;
  /** Present (and null) exactly when the member is optional. */
  default?: unknown;
  features?: string[];
}

export interface SchemaInfoObjectVariant {
  case: string;
  type: string;
}

export interface SchemaInfoObject extends SchemaInfoBase {
  "meta-type": "object";
  members: SchemaInfoObjectMember[];
  tag?: string;
  variants?: SchemaInfoObjectVariant[];
}

export interface SchemaInfoAlternate extends SchemaInfoBase {
  "meta-type": "alternate";
  members: { type: string }[];
}

export interface SchemaInfoCommand extends SchemaInfoBase {
  "meta-type": "command";
  "arg-type": string;
  "ret-type": string;
  "allow-oob"?: boolean;
}

export interface SchemaInfoEvent extends SchemaInfoBase {
  "meta-type": "event";
  "arg-type": string;
}

export type SchemaInfo =
  | SchemaInfoBuiltin
  | SchemaInfoEnum
  | SchemaInfoArray
  | SchemaInfoObject
  | SchemaInfoAlternate
  | SchemaInfoCommand
  | SchemaInfoEvent;
