//! The served OpenAPI document is the one in the repository, and it is a
//! well-formed OpenAPI 3.1 document naming every route the service routes.

use serde_json::Value;

#[test]
fn served_json_matches_the_yaml_in_the_repository() {
    let yaml: Value =
        serde_yaml::from_str(include_str!("../openapi.yaml")).expect("openapi.yaml parses");
    let served: Value =
        serde_json::from_str(usersvc::openapi::DOCUMENT).expect("openapi.json parses");
    assert_eq!(
        yaml, served,
        "openapi.json is stale: run scripts/openapi-json.sh"
    );
}

#[test]
fn document_names_every_public_route() {
    let doc: Value = serde_json::from_str(usersvc::openapi::DOCUMENT).expect("json");
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().expect("paths");
    for (path, methods) in [
        ("/api/v1/users", &["post", "get"][..]),
        ("/api/v1/users/{id}", &["get", "patch", "delete"][..]),
        ("/healthz", &["get"][..]),
        ("/readyz", &["get"][..]),
        ("/startupz", &["get"][..]),
        ("/openapi.json", &["get"][..]),
    ] {
        for m in methods {
            assert!(paths[path][m].is_object(), "{m} {path} missing");
        }
    }
}
