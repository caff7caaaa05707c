//! The validation policies through the real gateway against a real origin: validate-content
//! checks bodies against the operation's schemas (Newtonsoft's messages, APIM's public
//! answers, the errors variable, on-error with context.LastError), validate-parameters the
//! request's path, query and headers, validate-status-code and validate-headers the
//! backend's response; and an API imported from OpenAPI is validated by its own schemas.

use crate::common::*;

const SCHEMAS: &str = r##"[{"id": "openapi-components", "contentType": "application/vnd.oai.openapi.components+json",
  "document": {"components": {"schemas": {
    "Pet": {"type": "object", "required": ["id", "name"],
            "properties": {"id": {"type": "integer", "minimum": 1}, "name": {"type": "string", "maxLength": 10},
                           "tags": {"type": "array", "items": {"type": "string"}}}}}}}}]"##;

/// A gateway whose API `pets` (POST /pets, GET /pets/{id}?limit) has `policies`.
fn gateway(origin: &Origin, policies: &str) -> Gateway {
    let config = format!(
        r#"{{"schemaVersion": 1, "version": "v1", "apis": [{{"id": "pets", "path": "pets", "serviceUrl": "{url}",
          "subscriptionRequired": false, "schemas": {SCHEMAS}, "policies": {policies},
          "operations": [
            {{"id": "add", "method": "POST", "urlTemplate": "/",
              "request": {{"representations": [{{"contentType": "application/json", "schemaId": "openapi-components", "typeName": "Pet"}}]}},
              "responses": [{{"statusCode": 200, "headers": [{{"name": "X-Rate", "type": "integer"}}],
                              "representations": [{{"contentType": "text/plain"}}]}}]}},
            {{"id": "get", "method": "GET", "urlTemplate": "/{{id}}",
              "templateParameters": [{{"name": "id", "type": "integer", "required": true}}],
              "request": {{"queryParameters": [{{"name": "limit", "type": "integer"}}, {{"name": "sort", "type": "string", "values": ["asc", "desc"]}}],
                           "headers": [{{"name": "X-Tenant", "type": "string"}}]}},
              "responses": [{{"statusCode": 200, "headers": [{{"name": "X-Rate", "type": "integer"}}]}}]}}]}}]}}"#,
        url = origin.url(""),
        policies = js(policies),
    );
    Gateway::start(&config, &[])
}

fn policies(inbound: &str, outbound: &str, on_error: &str) -> String {
    format!("<policies><inbound>{inbound}</inbound><backend><forward-request /></backend><outbound>{outbound}</outbound><on-error>{on_error}</on-error></policies>")
}

fn post(gw: &Gateway, content_type: &str, body: &str) -> Resp {
    send(
        gw,
        "POST",
        "/pets/",
        &[("Content-Type", content_type)],
        body,
    )
}

#[test]
fn validate_content_checks_request_bodies_against_the_operations_schema() {
    let origin = Origin::echo();
    let gw = gateway(
        &origin,
        &policies(
            r#"<validate-content unspecified-content-type-action="prevent" max-size="80" size-exceeded-action="prevent" errors-variable-name="errs">
                 <content-type-map><type from="application/hal+json" to="application/json" /></content-type-map>
                 <content type="application/json" validate-as="json" action="prevent" />
               </validate-content>"#,
            "",
            r#"<set-header name="X-Reason" exists-action="override"><value>@(context.LastError.Source + "/" + context.LastError.Reason)</value></set-header>
               <set-header name="X-Details" exists-action="override"><value>@(context.LastError.Message)</value></set-header>
               <set-header name="X-Path" exists-action="override"><value>@(context.LastError.Path)</value></set-header>"#,
        ),
    );
    let ok = post(&gw, "application/json", r#"{"id": 7, "name": "Rex"}"#);
    assert_eq!(ok.status, 200);
    assert_eq!(ok.text(), "POST /\n{\"id\": 7, \"name\": \"Rex\"}");
    // mapped content type, same schema
    assert_eq!(
        post(&gw, "application/hal+json", r#"{"id": 8, "name": "Ace"}"#).status,
        200
    );
    let bad = post(&gw, "application/json", r#"{"id": "7", "name": "Rex"}"#);
    assert_eq!(bad.status, 400);
    let message = "Body of the request does not conform to the definition Pet, which is associated with the content type application/json. Invalid type. Expected Integer but got String. Path 'id'.";
    assert_eq!(bad.text(), error_body(400, message));
    assert_eq!(bad.header("X-Reason"), Some("validate-content/Bad request"));
    assert_eq!(bad.header("X-Details"), Some(message));
    assert_eq!(bad.header("X-Path"), Some("validate-content"));
    let missing = post(&gw, "application/json", r#"{"id": 0, "tags": ["a", 3]}"#);
    assert_eq!(missing.status, 400);
    assert!(
        missing
            .text()
            .contains("Required properties are missing from object: name. Path ''."),
        "{}",
        missing.text()
    );
    let not_json = post(&gw, "application/json", "{id: ");
    assert_eq!(not_json.status, 400);
    assert!(not_json.text().starts_with(r#"{"statusCode": 400, "message": "Body of the request does not conform to the definition Pet"#), "{}", not_json.text());
    let text = post(&gw, "text/plain", "hello");
    assert_eq!(text.status, 400);
    assert_eq!(
        text.text(),
        error_body(400, "Unspecified content type text/plain is not allowed.")
    );
    let big = format!(
        r#"{{"id": 1, "name": "Rex", "tags": ["{}"]}}"#,
        "x".repeat(60)
    );
    let r = post(&gw, "application/json", &big);
    assert_eq!(r.status, 400);
    assert_eq!(
        r.text(),
        error_body(
            400,
            &format!(
                "Request's body is {} bytes long and it exceeds the limit of 80 bytes.",
                big.len()
            )
        )
    );
    // nothing refused reached the origin
    assert_eq!(origin.requests().len(), 2);
}

#[test]
fn detect_logs_to_the_errors_variable_and_lets_the_call_through() {
    let origin = Origin::echo();
    let gw = gateway(
        &origin,
        &policies(
            r#"<validate-content unspecified-content-type-action="detect" max-size="1000" size-exceeded-action="detect" errors-variable-name="errs">
                 <content type="application/json" validate-as="json" action="detect" allow-additional-properties="false" />
               </validate-content>
               <set-header name="X-Count" exists-action="override"><value>@(((JArray)context.Variables["errs"]).Count.ToString())</value></set-header>
               <set-header name="X-First" exists-action="override"><value>@{
                   var errs = (JArray)context.Variables["errs"];
                   return errs.Count == 0 ? "none" : (string)errs[0]["ValidationRule"] + " " + (string)errs[0]["Action"] + ": " + (string)errs[0]["Details"];
               }</value></set-header>"#,
            "",
            "",
        ),
    );
    let r = post(
        &gw,
        "application/json",
        r#"{"id": 1, "name": "Rex", "color": "red"}"#,
    );
    assert_eq!(r.status, 200);
    let seen = origin.requests();
    assert_eq!(seen[0].header("X-Count"), Some("1"));
    assert_eq!(
        seen[0].header("X-First"),
        Some("IncorrectMessage detect: Body of the request does not conform to the definition Pet, which is associated with the content type application/json. Property 'color' has not been defined and the schema does not allow additional properties. Path 'color'.")
    );
    let r = post(&gw, "application/json", r#"{"id": 1, "name": "Rex"}"#);
    assert_eq!(r.status, 200);
    assert_eq!(origin.requests()[1].header("X-First"), Some("none"));
}

#[test]
fn validate_parameters_checks_path_query_and_headers() {
    let origin = Origin::echo();
    let gw = gateway(
        &origin,
        &policies(
            r#"<validate-parameters specified-parameter-action="prevent" unspecified-parameter-action="prevent" errors-variable-name="perrs">
                 <headers unspecified-parameter-action="ignore" />
               </validate-parameters>"#,
            "",
            "",
        ),
    );
    let get = |path: &str, headers: &[(&str, &str)]| send(&gw, "GET", path, headers, "");
    assert_eq!(
        get(
            "/pets/7?limit=5&sort=asc",
            &[("X-Tenant", "a"), ("X-Other", "b")]
        )
        .status,
        200
    );
    let cases = [
        ("/pets/seven", "The value of the path parameter id does not conform to the definition. Invalid type. Expected Integer but got String."),
        ("/pets/7?limit=many", "The value of the query parameter limit does not conform to the definition. Invalid type. Expected Integer but got String."),
        ("/pets/7?sort=up", "The value of the query parameter sort does not conform to the definition. Value up is not defined in enum."),
        ("/pets/7?debug=1", "Unspecified query parameter debug is not allowed."),
        ("/pets/7?limit=1&limit=2", "Request cannot contain multiple values for the query parameter limit."),
    ];
    for (path, message) in cases {
        let r = get(path, &[]);
        assert_eq!(r.status, 400, "{path}");
        assert_eq!(r.text(), error_body(400, message), "{path}");
    }
    assert_eq!(origin.requests().len(), 1);
}

#[test]
fn validate_status_code_and_headers_check_the_backends_response() {
    let origin = Origin::start(|req, s| {
        let (status, headers): (u16, Vec<(&str, &str)>) = match req.target.as_str() {
            "/" => (201, vec![]),
            "/1" => (200, vec![("X-Rate", "fast")]),
            "/2" => (200, vec![("X-Internal", "secret")]),
            _ => (200, vec![("X-Rate", "10")]),
        };
        respond(s, status, &headers, b"ok");
        true
    });
    let gw = gateway(
        &origin,
        &policies(
            "",
            r#"<validate-status-code unspecified-status-code-action="prevent" />
               <validate-headers specified-header-action="prevent" unspecified-header-action="prevent" />"#,
            r#"<set-header name="X-Reason" exists-action="override"><value>@(context.LastError.Reason + ": " + context.LastError.Message)</value></set-header>"#,
        ),
    );
    let internal = error_body(
        502,
        "The request could not be processed due to an internal error. Contact the API owner.",
    );
    let r = send(&gw, "GET", "/pets/3", &[], "");
    assert_eq!((r.status, r.text()), (200, "ok".to_string()));
    let r = send(
        &gw,
        "POST",
        "/pets/",
        &[("Content-Type", "application/json")],
        "{}",
    );
    assert_eq!((r.status, r.text()), (502, internal.clone()));
    assert_eq!(
        r.header("X-Reason"),
        Some("Response not allowed: Response status code 201 is not allowed.")
    );
    let r = send(&gw, "GET", "/pets/1", &[], "");
    assert_eq!((r.status, r.text()), (502, internal.clone()));
    assert_eq!(
        r.header("X-Reason"),
        Some("Response not allowed: Value of the header X-Rate does not conform to the definition. Invalid type. Expected Integer but got String.")
    );
    let r = send(&gw, "GET", "/pets/2", &[], "");
    assert_eq!((r.status, r.text()), (502, internal));
    assert_eq!(
        r.header("X-Reason"),
        Some("Response not allowed: Unspecified header X-Internal is not allowed.")
    );
}

#[test]
fn validation_policies_refuse_what_they_cannot_do_at_load() {
    for (policy, why) in [
        (
            r#"<validate-content unspecified-content-type-action="prevent" max-size="10" size-exceeded-action="prevent"><content type="text/xml" validate-as="soap" action="prevent" /></validate-content>"#,
            r#"line 1 column 125: <content>: validate-as="soap" needs an XML Schema validator"#,
        ),
        (
            r#"<validate-content unspecified-content-type-action="stop" max-size="10" size-exceeded-action="prevent" />"#,
            "unspecified-content-type-action must be ignore, prevent or detect, not 'stop'",
        ),
        (
            r#"<validate-status-code />"#,
            "unspecified-status-code-action is required",
        ),
    ] {
        let dir = temp_dir("validation-check");
        let config = format!(
            r#"{{"schemaVersion": 1, "apis": [{{"id": "a", "path": "", "serviceUrl": "http://127.0.0.1:9", "policies": {}, "operations": []}}]}}"#,
            js(&policies(policy, "", ""))
        );
        let file = dir.join("c.json");
        std::fs::write(&file, config).unwrap();
        let (code, out, _) = edgegate(&["check", &file.display().to_string()]);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains(why), "{why}\n{out}");
    }
    // a typeName the API's schemas do not have
    let dir = temp_dir("validation-check");
    let config = format!(
        r#"{{"schemaVersion": 1, "apis": [{{"id": "a", "path": "", "serviceUrl": "http://127.0.0.1:9", "schemas": {SCHEMAS},
          "operations": [{{"id": "o", "method": "POST", "urlTemplate": "/", "request": {{"representations": [{{"contentType": "application/json", "typeName": "Cat"}}]}}}}]}}]}}"#
    );
    let file = dir.join("c.json");
    std::fs::write(&file, config).unwrap();
    let (code, out, _) = edgegate(&["check", &file.display().to_string()]);
    assert_eq!(code, 1);
    assert!(out.contains("apis[0].operations[0].request.representations[0].typeName: 'Cat' is not among the API's schemas"), "{out}");
}
