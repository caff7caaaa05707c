//! OpenAPI import and export through the real management plane and a real federated
//! gateway: public descriptions of every shape (tests/fixtures/openapi) become APIs whose
//! operations, template parameters and examples are as APIM imports them; mock-response
//! answers with the stored examples (or samples made from the schemas); a re-import keeps
//! policies and reports what changed; unsupported constructs are refused whole with
//! their JSON pointer; an export is OpenAPI 3 that imports again.

use std::time::Duration;

use crate::common::*;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/openapi/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

const NOWHERE: &str = "serviceUrl=http%3A%2F%2F127.0.0.1%3A9";

#[test]
fn descriptions_of_every_shape_import_as_apim_maps_them() {
    let plane = Plane::start();
    // (fixture, query, status, the import's report)
    let cases: [(&str, &str, u16, &str); 10] = [
        (
            "v2.0_json_petstore-expanded.json",
            "",
            201,
            r#"{"api":"a","created":true,"operations":{"added":["findpets","addpet","find-pet-by-id","deletepet"],"deleted":[],"unchanged":[],"updated":[]}}"#,
        ),
        (
            "v2.0_json_uber.json",
            "",
            201,
            r#"{"api":"a","created":true,"operations":{"added":["get-estimates-price","get-estimates-time","get-history","get-me","get-products"],"deleted":[],"unchanged":[],"updated":[]}}"#,
        ),
        (
            "v3.0_petstore.json",
            "",
            201,
            r#"{"api":"a","created":true,"operations":{"added":["listpets","createpets","showpetbyid"],"deleted":[],"unchanged":[],"updated":[]}}"#,
        ),
        (
            "v3.0_petstore-expanded.yaml",
            "",
            201,
            r#"{"api":"a","created":true,"operations":{"added":["findpets","addpet","find-pet-by-id","deletepet"],"deleted":[],"unchanged":[],"updated":[]}}"#,
        ),
        (
            "v3.0_api-with-examples.yaml",
            NOWHERE,
            201,
            r#"{"api":"a","created":true,"operations":{"added":["listversionsv2","getversiondetailsv2"],"deleted":[],"unchanged":[],"updated":[]}}"#,
        ),
        (
            "v3.0_callback-example.yaml",
            NOWHERE,
            201,
            r#"{"api":"a","created":true,"operations":{"added":["post-streams"],"deleted":[],"unchanged":[],"updated":[]}}"#,
        ),
        (
            "v3.0_link-example.yaml",
            NOWHERE,
            201,
            r#"{"api":"a","created":true,"operations":{"added":["getrepositoriesbyowner","getrepository","getpullrequestsbyrepository","getpullrequestsbyid","mergepullrequest","getuserbyname"],"deleted":[],"unchanged":[],"updated":[]}}"#,
        ),
        (
            "v3.0_uspto.yaml",
            "",
            201,
            r#"{"api":"a","created":true,"operations":{"added":["list-data-sets","list-searchable-fields","perform-search"],"deleted":[],"unchanged":[],"updated":[]}}"#,
        ),
        (
            "v3.1_tictactoe.yaml",
            NOWHERE,
            201,
            r#"{"api":"a","created":true,"operations":{"added":["get-board","get-square","put-square"],"deleted":[],"unchanged":[],"updated":[]}}"#,
        ),
        (
            "v3.1_webhook-example.yaml",
            NOWHERE,
            201,
            r#"{"api":"a","created":true,"operations":{"added":[],"deleted":[],"unchanged":[],"updated":[]}}"#,
        ),
    ];
    for (i, (file, query, status, report)) in cases.iter().enumerate() {
        let id = format!("api{i}");
        let (s, b) = plane.admin(
            "PUT",
            &format!("/admin/apis/{id}?import=openapi&{query}"),
            &fixture(file),
        );
        assert_eq!(s, *status, "{file}: {b}");
        assert_eq!(
            b,
            report.replace(r#""api":"a""#, &format!(r#""api":"{id}""#)),
            "{file}"
        );
    }
    // what the operations became, as APIM maps them
    let op = |api: &str, op: &str| {
        plane
            .admin("GET", &format!("/admin/apis/{api}/operations/{op}"), "")
            .1
    };
    // Swagger 2: required query parameters are template parameters of the URL template
    assert!(op("api1", "get-estimates-price").contains(
        r#""urlTemplate":"/estimates/price?start_latitude={start_latitude}&start_longitude={start_longitude}&end_latitude={end_latitude}&end_longitude={end_longitude}""#
    ));
    // a path parameter; the display name is the summary; an operationId normalised
    let show = op("api2", "showpetbyid");
    assert!(
        show.contains(r#""displayName":"Info for a specific pet""#),
        "{show}"
    );
    assert!(show.contains(r#""templateParameters":[{"description":"The id of the pet to retrieve","name":"petId","required":true,"type":"string"}]"#), "{show}");
    assert!(show.contains(r#""urlTemplate":"/pets/{petId}""#), "{show}");
    // an optional query parameter stays a query parameter
    assert!(op("api2", "listpets").contains(r#""queryParameters":[{"description":"How many items to return at one time (max 100)","name":"limit","required":false,"type":"integer"}]"#));
    // the first https server, its variables at their defaults
    let uspto = plane.admin("GET", "/admin/apis/api7", "").1;
    assert!(
        uspto.contains(r#""serviceUrl":"https://developer.uspto.gov/ds-api""#),
        "{uspto}"
    );
    assert!(
        uspto.contains(r#""displayName":"USPTO Data Set API""#),
        "{uspto}"
    );
    // without an operationId: method and path
    assert!(op("api5", "post-streams")
        .contains(r#""urlTemplate":"/streams?callbackUrl={callbackUrl}""#));
    // schemas at API scope, referenced by name from representations
    let pets = plane.admin("GET", "/admin/apis/api2", "").1;
    assert!(pets.contains(r#""schemas":[{"contentType":"application/vnd.oai.openapi.components+json","document":{"components":{"schemas":{"Error":"#), "{pets}");
    assert!(
        show.contains(r#""schemaId":"openapi-components","typeName":"Pet""#),
        "{show}"
    );
    // Swagger 2 definitions are stored as components, references rewritten
    let expanded = plane.admin("GET", "/admin/apis/api0", "").1;
    assert!(
        expanded.contains(r##"{"allOf":[{"$ref":"#/components/schemas/NewPet"}"##),
        "{expanded}"
    );
    // a GET's request body is dropped (APIM), a POST's kept
    assert!(!op("api3", "findpets").contains(
        "representations\":[{\"contentType\":\"application/json\",\"sample\":\"{\\\"name\\\""
    ));
    assert!(op("api3", "addpet").contains(r#""request":{"description":"Pet to add to the store","representations":[{"contentType":"application/json","sample":"{\"name\":\"string\",\"tag\":\"string\"}","schemaId":"openapi-components","typeName":"NewPet"}]}"#));

    // translateRequiredQueryParameters=query keeps them query parameters
    let (s, b) = plane.admin(
        "PUT",
        "/admin/apis/uberq?import=openapi&translateRequiredQueryParameters=query&path=uberq",
        &fixture("v2.0_json_uber.json"),
    );
    assert_eq!(s, 201, "{b}");
    let price = op("uberq", "get-estimates-price");
    assert!(
        price.contains(r#""urlTemplate":"/estimates/price""#),
        "{price}"
    );
    assert!(price.contains(r#""queryParameters":[{"description":"Latitude component of start location.","name":"start_latitude","required":true,"type":"number"}"#), "{price}");
}

#[test]
fn mock_response_answers_with_imported_examples_through_a_federated_gateway() {
    let plane = Plane::start();
    let imports = [
        ("examples", "v3.0_api-with-examples.yaml", "examples"),
        ("pets", "v3.0_petstore.json", "pets"),
    ];
    for (id, file, path) in imports {
        let (s, b) = plane.admin(
            "PUT",
            &format!("/admin/apis/{id}?import=openapi&path={path}&{NOWHERE}"),
            &fixture(file),
        );
        assert_eq!(s, 201, "{b}");
        // the API's policy: answer from the operation's examples
        let mut api = plane.admin("GET", &format!("/admin/apis/{id}"), "").1;
        let policy = r#""policies":"<policies><inbound><mock-response status-code=\"200\" content-type=\"application/json\" /></inbound><backend /><outbound /><on-error /></policies>","subscriptionRequired":false,"#;
        api.insert_str(1, policy);
        let (s, b) = plane.admin("PUT", &format!("/admin/apis/{id}"), &api);
        assert_eq!(s, 200, "{b}");
        plane.admin("PUT", "/admin/gateways/gw1", "{}");
        let (s, b) = plane.admin("PUT", &format!("/admin/gateways/gw1/apis/{id}"), "");
        assert!(s == 201 || s == 204, "{s} {b}");
    }
    let gw = Gateway::start_service(&plane.url(), &plane.token("gw1"), &[]);
    assert!(eventually(Duration::from_secs(20), || get(
        gw.addr,
        "/pets/pets"
    )
    .status
        == 200));
    // the named example of the document, its keys in the document's order
    let r = get(gw.addr, "/examples/");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    assert_eq!(
        r.text(),
        r#"{"versions":[{"status":"CURRENT","updated":"2011-01-21T11:33:21Z","id":"v2.0","links":[{"href":"http://127.0.0.1:8774/v2/","rel":"self"}]},{"status":"EXPERIMENTAL","updated":"2013-07-23T11:33:21Z","id":"v3.0","links":[{"href":"http://127.0.0.1:8774/v3/","rel":"self"}]}]}"#
    );
    // no example: a sample made from the schema (an array of Pet)
    let r = get(gw.addr, "/pets/pets");
    assert_eq!(r.text(), r#"[{"id":0,"name":"string","tag":"string"}]"#);
    let r = get(gw.addr, "/pets/pets/7");
    assert_eq!(r.text(), r#"{"id":0,"name":"string","tag":"string"}"#);
}

#[test]
fn a_reimport_matches_by_id_keeps_policies_and_reports_what_changed() {
    let plane = Plane::start();
    let v1 = fixture("v3.0_petstore-expanded.yaml");
    let (s, b) = plane.admin("PUT", "/admin/apis/pets?import=openapi", &v1);
    assert_eq!(s, 201, "{b}");
    // an operation given a policy by hand
    let mut op = plane
        .admin("GET", "/admin/apis/pets/operations/deletepet", "")
        .1;
    op.insert_str(1, r#""policies":"<policies><inbound><set-header name=\"X-Kept\" exists-action=\"override\"><value>yes</value></set-header></inbound><backend><forward-request /></backend><outbound /><on-error /></policies>","#);
    let (s, b) = plane.admin("PUT", "/admin/apis/pets/operations/deletepet", &op);
    assert_eq!(s, 200, "{b}");
    // version 2: findPets gone, addPet's summary changed, a new operation
    let v2 = v1
        .replacen("      operationId: findPets", "      operationId: listPets", 1)
        .replace("Creates a new pet in the store.", "Adds a pet.")
        .replace(
            "  /pets/{id}:",
            "  /stats:\n    get:\n      operationId: getStats\n      responses:\n        '204':\n          description: no content\n  /pets/{id}:",
        );
    let (s, b) = plane.admin("PUT", "/admin/apis/pets?import=openapi", &v2);
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        b,
        r#"{"api":"pets","created":false,"operations":{"added":["listpets","getstats"],"deleted":["findpets"],"unchanged":["find-pet-by-id","deletepet"],"updated":["addpet"]}}"#
    );
    // deletepet kept its policy, so it is unchanged
    let kept = plane
        .admin("GET", "/admin/apis/pets/operations/deletepet", "")
        .1;
    assert!(kept.contains("X-Kept"), "{kept}");
    let (s, _) = plane.admin("GET", "/admin/apis/pets/operations/findpets", "");
    assert_eq!(s, 404);
    // the same document again changes nothing
    let (s, b) = plane.admin("PUT", "/admin/apis/pets?import=openapi", &v2);
    assert_eq!(s, 200);
    assert_eq!(
        b,
        r#"{"api":"pets","created":false,"operations":{"added":[],"deleted":[],"unchanged":["listpets","addpet","find-pet-by-id","deletepet","getstats"],"updated":[]}}"#
    );
}

#[test]
fn unsupported_constructs_are_refused_whole_with_their_pointer() {
    let plane = Plane::start();
    let base = r#"{"openapi": "3.0.3", "info": {"title": "t", "version": "1"},
      "servers": [{"url": "https://backend.example/v1"}], "paths": PATHS, "components": COMPONENTS}"#;
    let doc = |paths: &str, components: &str| {
        base.replace("PATHS", paths)
            .replace("COMPONENTS", components)
    };
    let ok_paths =
        r#"{"/a": {"get": {"operationId": "a", "responses": {"200": {"description": "ok"}}}}}"#;
    let cases: Vec<(String, &str, &str)> = vec![
        (
            fixture("v2.0_json_petstore-separate-swagger.json"),
            "/paths/~1pets/get/parameters/0/$ref",
            "'parameters.json#/tagsParam' refers outside the document; external references are not supported (merge them into one document)",
        ),
        (
            doc(ok_paths, r##"{"schemas": {"Node": {"type": "object", "properties": {"children": {"type": "array", "items": {"$ref": "#/components/schemas/Node"}}}}}}"##),
            "/components/schemas/Node/properties/children/items/$ref",
            "schema 'Node' is recursive (it refers back to itself); recursive schemas are not supported",
        ),
        (
            doc(r#"{"/a": {"get": {"parameters": [{"name": "session", "in": "cookie", "schema": {"type": "string"}}], "responses": {"200": {"description": "ok"}}}}}"#, "{}"),
            "/paths/~1a/get/parameters/0/in",
            "cookie parameter 'session' is not supported (a policy can read cookies)",
        ),
        (
            r#"{"swagger": "2.0", "info": {"title": "t", "version": "1"}, "host": "h", "paths": {"/f": {"post": {"parameters": [{"name": "file", "in": "formData", "type": "file"}], "responses": {"200": {"description": "ok"}}}}}}"#.to_string(),
            "/paths/~1f/post/parameters/0/in",
            "formData parameter 'file' is not supported (a policy can read form bodies)",
        ),
        (
            doc(r#"{"/a/{id}": {"get": {"parameters": [{"name": "id", "in": "path", "required": true}, {"name": "id", "in": "query", "required": true}], "responses": {}}}}"#, "{}"),
            "/paths/~1a~1{id}/get/parameters/1/name",
            "'id' names both a path and a query parameter; names must be unique within the URL template",
        ),
        (
            r#"{"openapi": "2.5.0", "paths": {}}"#.to_string(),
            "/openapi",
            "OpenAPI 2.5.0 is not supported (3.0 and 3.1 are, and Swagger 2.0)",
        ),
        (
            "openapi: 3.0.0\npaths:\n  /a: [unclosed\n".to_string(),
            "",
            "YAML: ",
        ),
        (
            "{\"openapi\": \"3.0.0\", ".to_string(),
            "",
            "not valid JSON: ",
        ),
    ];
    for (i, (text, pointer, message)) in cases.iter().enumerate() {
        let (s, b) = plane.admin("PUT", &format!("/admin/apis/bad{i}?import=openapi"), text);
        assert_eq!(s, 400, "{i}: {b}");
        let expected_path = format!(r#""errors": [{{"path": "{pointer}", "message": "#);
        assert!(b.contains(&expected_path), "{i}: {b}");
        assert!(
            b.contains(&js(message)[..js(message).len() - 1]),
            "{i}: {b}"
        );
        // nothing was created
        assert_eq!(
            plane.admin("GET", &format!("/admin/apis/bad{i}"), "").0,
            404,
            "{i}"
        );
    }
    // a refused re-import leaves the API as it was
    let (s, b) = plane.admin("PUT", "/admin/apis/t?import=openapi", &doc(ok_paths, "{}"));
    assert_eq!(s, 201, "{b}");
    let before = plane.admin("GET", "/admin/apis/t", "").1;
    let bad = doc(
        r#"{"/b": {"get": {"parameters": [{"name": "c", "in": "cookie"}], "responses": {}}}}"#,
        "{}",
    );
    assert_eq!(
        plane.admin("PUT", "/admin/apis/t?import=openapi", &bad).0,
        400
    );
    assert_eq!(plane.admin("GET", "/admin/apis/t", "").1, before);
    // what the gateway's compiler refuses is named by its place in the document
    let (s, b) = plane.admin(
        "PUT",
        "/admin/apis/u?import=openapi",
        &doc(
            r#"{"/a": {"get": {"responses": {}}}, "/a/": {"get": {"responses": {}}}}"#,
            "{}",
        ),
    );
    assert_eq!(s, 400, "{b}");
    assert!(
        b.contains(r#""errors": [{"path": "/paths/~1a~1/get", "message": "urlTemplate: GET /a/ can never match: /paths/~1a/get has the same method and template"}]"#),
        "{b}"
    );
    // ids repeated by the document get APIM's suffixes
    let (s, b) = plane.admin(
        "PUT",
        "/admin/apis/u?import=openapi",
        &doc(r#"{"/x": {"get": {"operationId": "Same Thing!", "responses": {}}, "put": {"operationId": "same-thing", "responses": {}}, "post": {"operationId": "SAME_thing", "responses": {}}}}"#, "{}"),
    );
    assert_eq!(s, 201, "{b}");
    assert!(
        b.contains(r#""added":["same-thing","same-thing-1","same-thing-2"]"#),
        "{b}"
    );
}

#[test]
fn an_export_is_openapi_3_that_imports_again() {
    let plane = Plane::start();
    let (s, b) = plane.admin(
        "PUT",
        "/admin/apis/pets?import=openapi&path=store",
        &fixture("v3.0_petstore.json"),
    );
    assert_eq!(s, 201, "{b}");
    let (s, json) = plane.admin("GET", "/admin/apis/pets?export=openapi", "");
    assert_eq!(s, 200);
    for part in [
        r#""openapi":"3.0.1""#,
        r#""servers":[{"url":"/store"}]"#,
        r#""info":{"title":"Swagger Petstore","version":"1.0"}"#,
        r##""/pets/{petId}":{"get":{"operationId":"showpetbyid","parameters":[{"description":"The id of the pet to retrieve","in":"path","name":"petId","required":true,"schema":{"type":"string"}}],"responses":{"200":{"content":{"application/json":{"schema":{"$ref":"#/components/schemas/Pet"}}},"description":"Expected response to a valid request"}},"summary":"Info for a specific pet"}}"##,
        r#""securitySchemes":{"apiKeyHeader":{"in":"header","name":"Ocp-Apim-Subscription-Key","type":"apiKey"},"apiKeyQuery":{"in":"query","name":"subscription-key","type":"apiKey"}}"#,
        r##""Pets":{"items":{"$ref":"#/components/schemas/Pet"},"maxItems":100,"type":"array"}"##,
    ] {
        assert!(json.contains(part), "{part}\n{json}");
    }
    let (s, yaml) = plane.admin("GET", "/admin/apis/pets?export=openapi&format=yaml", "");
    assert_eq!(s, 200);
    assert!(yaml.starts_with("---\n"), "{yaml}");
    assert!(yaml.contains("\nopenapi: 3.0.1\n"), "{yaml}");
    // both forms import again into the same operations
    for (id, text) in [("again-json", &json), ("again-yaml", &yaml)] {
        let (s, b) = plane.admin(
            "PUT",
            &format!("/admin/apis/{id}?import=openapi&{NOWHERE}"),
            text,
        );
        assert_eq!(s, 201, "{b}");
        assert_eq!(
            b,
            format!(
                r#"{{"api":"{id}","created":true,"operations":{{"added":["listpets","createpets","showpetbyid"],"deleted":[],"unchanged":[],"updated":[]}}}}"#
            )
        );
    }
    assert_eq!(
        plane.admin("GET", "/admin/apis/pets?export=swagger", "").0,
        400
    );
    assert_eq!(
        plane
            .admin("GET", "/admin/apis/nothing?export=openapi", "")
            .0,
        404
    );
}

#[test]
fn manage_import_reads_a_file_into_the_plane_database_beside_a_running_plane() {
    let plane = Plane::start();
    let db = plane.dir.join("plane.db");
    let file = format!(
        "{}/tests/fixtures/openapi/v3.0_uspto.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let db_text = db.display().to_string();
    let (code, out, err) = edgegate(&[
        "manage", "import", "--api", "uspto", &file, "--path", "patents", "--db", &db_text,
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "{\"api\":\"uspto\",\"created\":true,\"operations\":{\"added\":[\"list-data-sets\",\"list-searchable-fields\",\"perform-search\"],\"deleted\":[],\"unchanged\":[],\"updated\":[]}}\n"
    );
    // the running plane sees it
    let (s, b) = plane.admin("GET", "/admin/apis/uspto", "");
    assert_eq!(s, 200);
    assert!(b.contains(r#""path":"patents""#), "{b}");
    // a refused document: exit 1, the problem with its pointer
    let bad = plane.dir.join("bad.json");
    std::fs::write(&bad, fixture("v2.0_json_petstore-separate-swagger.json")).unwrap();
    let (code, out, err) = edgegate(&[
        "manage",
        "import",
        "--api",
        "sep",
        &bad.display().to_string(),
        "--db",
        &db_text,
    ]);
    assert_eq!(code, 1);
    assert_eq!(out, "");
    assert_eq!(
        err,
        "edgegate: /paths/~1pets/get/parameters/0/$ref: 'parameters.json#/tagsParam' refers outside the document; external references are not supported (merge them into one document)\n"
    );
    let (code, _, err) = edgegate(&["manage", "import", &file]);
    assert_eq!(code, 2);
    assert!(
        err.starts_with("edgegate: manage import needs --api ID\n"),
        "{err}"
    );
}

#[test]
fn an_imported_api_is_validated_by_its_own_schemas() {
    let origin = Origin::echo();
    let plane = Plane::start();
    let service = origin.url("").replace(':', "%3A").replace('/', "%2F");
    let (s, b) = plane.admin(
        "PUT",
        &format!("/admin/apis/pets?import=openapi&path=pets&serviceUrl={service}"),
        &fixture("v3.0_petstore-expanded.yaml"),
    );
    assert_eq!(s, 201, "{b}");
    let mut api = plane.admin("GET", "/admin/apis/pets", "").1;
    let policy = r#""policies":"<policies><inbound><validate-content unspecified-content-type-action=\"prevent\" max-size=\"102400\" size-exceeded-action=\"prevent\"><content type=\"application/json\" validate-as=\"json\" action=\"prevent\" /></validate-content><validate-parameters specified-parameter-action=\"prevent\" unspecified-parameter-action=\"ignore\" /></inbound><backend><forward-request /></backend><outbound /><on-error /></policies>","subscriptionRequired":false,"#;
    api.insert_str(1, policy);
    let (s, b) = plane.admin("PUT", "/admin/apis/pets", &api);
    assert_eq!(s, 200, "{b}");
    plane.admin("PUT", "/admin/gateways/gw1", "{}");
    plane.admin("PUT", "/admin/gateways/gw1/apis/pets", "");
    let gw = Gateway::start_service(&plane.url(), &plane.token("gw1"), &[]);
    let json = [("Content-Type", "application/json")];
    assert!(eventually(Duration::from_secs(20), || send(
        &gw,
        "POST",
        "/pets/pets",
        &json,
        r#"{"name": "Rex"}"#
    )
    .status
        == 200));
    let r = send(&gw, "POST", "/pets/pets", &json, r#"{"tag": "dog"}"#);
    assert_eq!(r.status, 400);
    assert_eq!(
        r.text(),
        error_body(400, "Body of the request does not conform to the definition NewPet, which is associated with the content type application/json. Required properties are missing from object: name. Path ''.")
    );
    // findPets' limit is an int32 query parameter
    assert_eq!(send(&gw, "GET", "/pets/pets?limit=10", &[], "").status, 200);
    let r = send(&gw, "GET", "/pets/pets?limit=ten", &[], "");
    assert_eq!(r.status, 400);
    assert_eq!(
        r.text(),
        error_body(400, "The value of the query parameter limit does not conform to the definition. Invalid type. Expected Integer but got String.")
    );
}

/// GitHub's REST API description, unchanged: 1,223 operations in 13 MB, with a segment
/// holding two parameters. It imports whole, a gateway serves it, and the compare
/// route reaches the backend with both parameters matched.
#[test]
fn githubs_rest_api_description_imports_whole_and_is_served() {
    let out = std::process::Command::new("gzip")
        .args(["-dc"])
        .arg(format!(
            "{}/tests/fixtures/openapi/github_api.github.com.json.gz",
            env!("CARGO_MANIFEST_DIR")
        ))
        .output()
        .expect("gzip installed");
    assert!(out.status.success());
    let spec = String::from_utf8(out.stdout).unwrap();
    let origin = Origin::echo();
    let plane = Plane::start();
    let (s, b) = plane.admin(
        "PUT",
        &format!(
            "/admin/apis/github?import=openapi&path=github&serviceUrl={}",
            edgegate::manage::web::html::url(&origin.url(""))
        ),
        &spec,
    );
    assert_eq!(s, 201, "{}", &b[..b.len().min(500)]);
    let report: miniserde::json::Value = miniserde::json::from_str(&b).unwrap();
    let added = match &report {
        miniserde::json::Value::Object(o) => match o.get("operations") {
            Some(miniserde::json::Value::Object(ops)) => match ops.get("added") {
                Some(miniserde::json::Value::Array(a)) => a.len(),
                _ => 0,
            },
            _ => 0,
        },
        _ => 0,
    };
    assert_eq!(added, 1223);
    let (s, op) = plane.admin(
        "GET",
        "/admin/apis/github/operations/repos-compare-commits",
        "",
    );
    assert_eq!(s, 200, "{op}");
    assert!(
        op.contains(r#""urlTemplate":"/repos/{owner}/{repo}/compare/{base}...{head}""#),
        "{op}"
    );
    // open, with a policy that reads the parameters of the two-parameter segment
    let mut api = plane.admin("GET", "/admin/apis/github", "").1;
    let policy = r#""policies":"<policies><inbound><set-header name=\"X-Compare\" exists-action=\"override\"><value>@(context.Request.MatchedParameters.GetValueOrDefault(\"base\", \"-\") + \" to \" + context.Request.MatchedParameters.GetValueOrDefault(\"head\", \"-\"))</value></set-header></inbound><backend><forward-request /></backend><outbound /><on-error /></policies>","subscriptionRequired":false,"#;
    api.insert_str(1, policy);
    let (s, b) = plane.admin("PUT", "/admin/apis/github", &api);
    assert_eq!(s, 200, "{}", &b[..b.len().min(500)]);
    plane.admin("PUT", "/admin/gateways/gw1", "{}");
    plane.admin("PUT", "/admin/gateways/gw1/apis/github", "");
    let gw = Gateway::start_service(&plane.url(), &plane.token("gw1"), &[]);
    let served = eventually(Duration::from_secs(30), || {
        get(gw.addr, "/github/zen").status == 200
    });
    assert!(served, "{}\n{:?}", status(&gw), gw.log_lines());
    let r = get(gw.addr, "/github/repos/octo/hello/compare/v1.0...feature");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "GET /repos/octo/hello/compare/v1.0...feature\n");
    let seen = origin.requests();
    let last = seen.last().unwrap();
    assert_eq!(last.header("X-Compare"), Some("v1.0 to feature"));
}
