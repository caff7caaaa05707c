#!/usr/bin/env python3
"""Writes the documents of the 2 KB JSON POST benchmarks into a directory: the
gateway without policies (plain.json), the
expression chain typical of APIM documents (expr.json), validate-content of the same
POST against the order's schema (valid.json), the 2 KB order (order.json) and wrk's
script posting it (post.lua). Used by bench/policies.sh and bench/instructions.sh.
Usage: post_documents.py DIR ORIGIN_PORT"""
import json, sys
w, origin = sys.argv[1], sys.argv[2]
policy = '''<policies><inbound>
<set-variable name="order" value="@(context.Request.Body.As<JObject>(preserveContent: true))" />
<set-variable name="tier" value="@{
    var tier = context.Request.Headers.GetValueOrDefault("X-Tier", "bronze").ToLower();
    var order = (JObject)context.Variables["order"];
    return order["currency"].ToString() == "EUR" ? tier + "-eu" : tier;
}" />
<choose>
  <when condition="@(((JObject)context.Variables["order"])["total"].Value<double>() > 100)">
    <set-header name="X-Review" exists-action="override"><value>required</value></set-header>
  </when>
  <otherwise><set-header name="X-Review" exists-action="override"><value>none</value></set-header></otherwise>
</choose>
<set-body>@{
    var body = (JObject)context.Variables["order"];
    body["tier"] = (string)context.Variables["tier"];
    body.Remove("internal");
    return body.ToString(Formatting.None);
}</set-body>
<set-header name="X-Summary" exists-action="override"><value>@($"{context.Request.Method} {context.Variables["tier"]} {context.Request.Headers.GetValueOrDefault("X-Request-Id", "-")}")</value></set-header>
</inbound><backend><forward-request /></backend><outbound /><on-error /></policies>'''
api = lambda version, pol: {"schemaVersion": 1, "version": version, "apis": [{"id": "b", "path": "",
    "serviceUrl": f"http://127.0.0.1:{origin}", "subscriptionRequired": False,
    "operations": [{"id": "all", "method": "*", "urlTemplate": "/*"}]}], **({"policies": pol} if pol else {})}
json.dump(api("plain", None), open(f"{w}/plain.json", "w"))
json.dump(api("expr", policy), open(f"{w}/expr.json", "w"))
# validate-content of the same POST against the order's schema (as an OpenAPI import
# stores it), in prevent mode
schemas = [{"id": "openapi-components", "contentType": "application/vnd.oai.openapi.components+json",
  "document": {"components": {"schemas": {
    "Order": {"type": "object", "required": ["id", "total", "currency", "items"], "additionalProperties": False,
      "properties": {"id": {"type": "string"}, "total": {"type": "number", "minimum": 0},
        "currency": {"type": "string", "enum": ["EUR", "USD"]}, "internal": {"type": "string"},
        "items": {"type": "array", "maxItems": 100, "items": {"$ref": "#/components/schemas/Item"}}}},
    "Item": {"type": "object", "required": ["sku", "qty"],
      "properties": {"sku": {"type": "string", "pattern": "^sku-[0-9]{4}$"}, "name": {"type": "string", "maxLength": 100},
        "qty": {"type": "integer", "minimum": 1}, "price": {"type": "number"}}}}}}}]
validate = api("valid", '<policies><inbound><validate-content unspecified-content-type-action="prevent" max-size="102400" size-exceeded-action="prevent"><content type="application/json" validate-as="json" action="prevent" /></validate-content></inbound><backend><forward-request /></backend><outbound /><on-error /></policies>')
validate["apis"][0]["schemas"] = schemas
validate["apis"][0]["operations"] = [{"id": "all", "method": "*", "urlTemplate": "/*",
  "request": {"representations": [{"contentType": "application/json", "schemaId": "openapi-components", "typeName": "Order"}]}}]
json.dump(validate, open(f"{w}/valid.json", "w"))
items, i = [], 0
while len(json.dumps({"items": items})) < 1900:
    items.append({"sku": f"sku-{i:04d}", "name": f"Item number {i}", "qty": i % 5 + 1, "price": round(9.99 + i, 2)})
    i += 1
order = json.dumps({"id": "order-1", "total": 250.5, "currency": "EUR", "internal": "x", "items": items})
open(f"{w}/order.json", "w").write(order)
open(f"{w}/post.lua", "w").write(
    'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.headers["X-Tier"] = "Gold"\n'
    f'wrk.body = {json.dumps(order)}\n')
