//! `GET /openapi.json`: a valid OpenAPI 3 document that lists exactly the routes the router
//! serves, under the configured endpoint.

use std::collections::{BTreeMap, BTreeSet};

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::Value;

use crate::support::{app, get, request, send, state_with};

const METHODS: [&str; 6] = ["get", "head", "post", "put", "patch", "delete"];

async fn document(app: &Router) -> Value {
    let reply = send(app, Request::get("/openapi.json").body(Body::empty()).expect("request")).await;
    assert_eq!(reply.status, StatusCode::OK, "no token needed: {}", reply.text());
    assert_eq!(reply.header("content-type"), Some("application/json"));
    reply.json()
}

/// Every (path, method) of the document.
fn operations(doc: &Value) -> BTreeMap<String, BTreeSet<String>> {
    let paths = doc["paths"].as_object().expect("paths is an object");
    paths
        .iter()
        .map(|(path, item)| {
            let methods = METHODS.iter().filter(|m| item.get(**m).is_some()).map(|m| (*m).to_owned()).collect();
            (path.clone(), methods)
        })
        .collect()
}

/// A request path for a documented path: placeholders become names that exist in the test
/// catalog, so that even `HEAD` (which has no body to tell errors apart) reaches its handler.
fn concrete(path: &str) -> String {
    path.replace("{share}", "s1")
        .replace("{schema}", "sc1")
        .replace("{table}", "basic_partitioned")
        .replace("{path}", "part-0.parquet")
        .split('/')
        .map(|segment| if segment.starts_with('{') { "x" } else { segment })
        .collect::<Vec<_>>()
        .join("/")
}

/// Asserts the router answers exactly the documented methods of each documented path: a
/// documented one reaches a handler (not the 404 of the fallback, not 405); any other is 405
/// (`HEAD` comes with every `GET`, as axum serves it).
async fn assert_routes_match(app: &Router, doc: &Value) {
    for (path, methods) in operations(doc) {
        let uri = concrete(&path);
        for method in METHODS {
            let documented = methods.contains(method) || (method == "head" && methods.contains("get"));
            let m = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).expect("method");
            let reply = send(app, request(m, &uri).body(Body::empty()).expect("request")).await;
            if documented {
                assert_ne!(
                    reply.status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path} is documented but not routed"
                );
                // An implicit `HEAD` has no body to tell a handler's 404 from the fallback's;
                // its `GET` was checked.
                let implicit_head = method == "head" && !methods.contains("head");
                if reply.status == StatusCode::NOT_FOUND && !implicit_head {
                    assert!(
                        !(reply.text().contains("no such endpoint") || method == "head" && reply.body.is_empty()),
                        "{method} {path} ({uri}) is documented but not routed: {}",
                        reply.text()
                    );
                }
            } else {
                assert_eq!(
                    reply.status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path} is routed but not documented: {}",
                    reply.text()
                );
            }
        }
    }
}

#[tokio::test]
async fn every_documented_operation_is_routed_and_every_other_method_is_refused() {
    let app = app();
    let doc = document(&app).await;
    assert_routes_match(&app, &doc).await;
    // And a path the document does not name is the fallback's.
    let reply = get(&app, "/delta-sharing/not-a-route").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}

/// The router registers every route through `routes!`, which takes its path and methods from
/// the handler's `#[utoipa::path]`: a plain `.route(...)` would serve a path the document does
/// not name. Only the separate metrics listener's router uses `.route`, for paths the main
/// router documents.
#[tokio::test]
async fn no_route_is_registered_outside_the_document() {
    let src = |file: &str| {
        std::fs::read_to_string(crate::support::crate_dir().join("src").join(file)).expect("the server's source")
    };
    let admin = src("admin/mod.rs");
    assert!(!admin.contains(".route("), "admin routes are registered with routes!, not .route");
    let lib = src("lib.rs");
    let start = lib.find("pub fn router(").expect("router");
    let metrics = lib.find("pub fn metrics_router(").expect("metrics_router");
    assert!(start < metrics);
    let end = metrics + lib[metrics..].find("\n}\n").expect("end of metrics_router");
    let outside = format!("{}{}", &lib[..metrics], &lib[end..]);
    assert!(!outside.contains(".route("), "the router registers its routes with routes!, not .route");
    let doc = document(&app()).await;
    let documented = operations(&doc);
    let mut seen = 0;
    for call in lib[metrics..end].split(".route(\"").skip(1) {
        let path = &call[..call.find('"').expect("a path literal")];
        assert!(documented.get(path).is_some_and(|m| m.contains("get")), "metrics listener path {path} is documented");
        seen += 1;
    }
    assert_eq!(seen, 3, "/metrics, /health and /ready");
}

#[tokio::test]
async fn the_protocol_paths_follow_the_configured_endpoint() {
    let app = d2o_server::router(state_with("endpoint: /api/share\n"));
    let doc = document(&app).await;
    let ops = operations(&doc);
    assert!(ops["/api/share/shares"].contains("get"));
    assert!(ops["/api/share/shares/{share}/schemas/{schema}/tables/{table}"].contains("head"));
    assert!(ops[&format!("/api/share{}", d2o_catalog::credential::TOKEN_ENDPOINT_PATH)].contains("post"));
    assert!(ops["/api/share/files/{grant}/{path}"].contains("get"));
    assert!(ops["/admin/v1/recipients/{recipient}/rotate"].contains("post"));
    assert!(ops["/openapi.json"].contains("get"));
    assert!(!ops.keys().any(|p| p.starts_with("/delta-sharing")), "{:?}", ops.keys());
    assert_routes_match(&app, &doc).await;
}

/// Walks every value of the document.
fn visit<'a>(value: &'a Value, f: &mut impl FnMut(&'a Value)) {
    f(value);
    match value {
        Value::Array(items) => items.iter().for_each(|v| visit(v, f)),
        Value::Object(map) => map.values().for_each(|v| visit(v, f)),
        _ => {}
    }
}

#[tokio::test]
async fn the_document_is_valid_openapi_3() {
    let doc = document(&app()).await;
    let version = doc["openapi"].as_str().expect("openapi is a string");
    assert!(version.starts_with("3."), "{version}");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());

    // Every `$ref` resolves inside the document.
    let mut refs = Vec::new();
    visit(&doc, &mut |v| {
        if let Some(r) = v.get("$ref").and_then(Value::as_str) {
            refs.push(r.to_owned());
        }
    });
    assert!(!refs.is_empty());
    for r in &refs {
        let pointer = r.strip_prefix('#').unwrap_or_else(|| panic!("{r} is a local reference"));
        assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
    }

    let schemes = doc["components"]["securitySchemes"].as_object().expect("security schemes");
    let mut operation_ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        assert!(path.starts_with('/'), "{path}");
        let templated: BTreeSet<&str> =
            path.split('/').filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}'))).collect();
        for method in METHODS {
            let Some(op) = item.get(method) else { continue };
            let id = op["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path} has an operationId"));
            assert!(operation_ids.insert(id.to_owned()), "operationId {id} is unique");
            assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()), "{method} {path} has responses");
            // Every path parameter is declared, and every declared one is in the path.
            let declared: BTreeSet<&str> = op["parameters"]
                .as_array()
                .map(|ps| ps.iter().filter(|p| p["in"] == "path").filter_map(|p| p["name"].as_str()).collect())
                .unwrap_or_default();
            assert_eq!(declared, templated, "{method} {path}: path parameters");
            for requirement in op["security"].as_array().into_iter().flatten() {
                for name in requirement.as_object().expect("a requirement").keys() {
                    assert!(schemes.contains_key(name), "{method} {path}: unknown security scheme {name}");
                }
            }
        }
    }

    // Who needs which credential.
    let security = |path: &str, method: &str| doc["paths"][path][method]["security"].clone();
    assert_eq!(security("/delta-sharing/shares", "get"), serde_json::json!([{ "recipient": [] }]));
    assert_eq!(security("/admin/v1/shares", "post"), serde_json::json!([{ "admin": [] }]));
    assert_eq!(security("/metrics", "get"), serde_json::json!([{ "admin": [] }]));
    for (path, method) in [("/health", "get"), ("/openapi.json", "get"), ("/delta-sharing/activate/{secret}", "get")] {
        assert!(security(path, method).is_null(), "{method} {path} needs no credential");
    }
    // The admin API's bodies are described by the catalog's types.
    for schema in ["ShareInfo", "RecipientInfo", "NewRecipient", "StorageLocation", "RateLimit", "ErrorBody"] {
        assert!(doc["components"]["schemas"][schema].is_object(), "schema {schema}");
    }
    let ndjson = &doc["paths"]["/delta-sharing/shares/{share}/schemas/{schema}/tables/{table}/query"]["post"]["responses"]
        ["200"]["content"]["application/x-ndjson"];
    assert!(ndjson.is_object(), "query answers NDJSON");
}
