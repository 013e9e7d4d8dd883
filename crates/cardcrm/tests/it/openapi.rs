//! The OpenAPI document is well formed, every reference resolves, and every operation it
//! lists exists on the server and answers errors as problem+json.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::support::{Auth, spawn_app};

fn resolve<'a>(document: &'a Value, reference: &str) -> Option<&'a Value> {
    let pointer = reference.strip_prefix('#')?;
    document.pointer(pointer)
}

fn references(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                if key == "$ref"
                    && let Some(text) = inner.as_str()
                {
                    out.push(text.to_owned());
                }
                references(inner, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| references(item, out)),
        _ => {}
    }
}

#[tokio::test]
async fn the_document_is_openapi_3_1_and_every_reference_resolves() {
    let app = spawn_app().await;
    let answer = app.get(&Auth::None, "/api/v1/openapi.json").await;
    assert_eq!(answer.status, StatusCode::OK);
    let document = answer.body;
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1"), "{}", document["openapi"]);
    assert!(document["info"]["title"].is_string());
    let mut refs = Vec::new();
    references(&document, &mut refs);
    assert!(!refs.is_empty());
    for reference in refs {
        assert!(resolve(&document, &reference).is_some(), "unresolved {reference}");
    }
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            assert!(
                operation["responses"].as_object().is_some_and(|responses| !responses.is_empty()),
                "{method} {path} lists no responses"
            );
            assert!(operation["tags"].is_array(), "{method} {path} has no tag");
        }
    }
    let printed: Value = serde_json::from_str(&cardcrm_web::openapi_json()).unwrap();
    assert_eq!(printed, document, "the CLI prints the served document");
}

#[tokio::test]
async fn every_documented_operation_is_served() {
    let app = spawn_app().await;
    let document = app.get(&Auth::None, "/api/v1/openapi.json").await.body;
    let mut operations = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            operations.insert((method.to_uppercase(), path.clone()));
        }
    }
    assert!(operations.len() >= 30, "{operations:?}");
    for (method, path) in &operations {
        let concrete = path.replace("{id}", "1").replace("{channel}", "sms");
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let answer = app.request(&Auth::None, method.clone(), &concrete, None).await;
        assert_ne!(
            answer.status,
            StatusCode::NOT_FOUND,
            "{method} {path} is documented but not routed: {}",
            answer.text
        );
        assert_ne!(
            answer.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path} is documented but not routed"
        );
        if answer.status.is_client_error() || answer.status.is_server_error() {
            assert!(answer.is_problem(), "{method} {path}: {} is not problem+json", answer.status);
            assert!(answer.status.is_client_error(), "{method} {path} answered {}", answer.status);
        }
    }
}
