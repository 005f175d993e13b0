//! The OpenAPI document, generated: the schemas from `chorus_api`'s types, each operation from
//! its handler's `#[utoipa::path]`, and what every operation of a kind shares from the rules
//! that make it so (the guard's 401 and 429 on calls that change state, the JSON extractor's
//! 400, 415 and 422 on calls with a body, `?zone=`'s 400 and 404). Served at
//! `/api/v1/openapi.json`. Above both roles (it gathers their routes), beside `daemon`. The
//! tests (tests/tests/api.rs) check it against the routes in the source and
//! call every operation as documented.

use serde_json::json;
use std::sync::OnceLock;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::{Content, OpenApi, Ref, RefOr, ResponseBuilder};

/// The document, as served (built once).
pub(crate) fn document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| build().to_pretty_json().unwrap_or_default())
}

/// Every role's operations, each marked with the role that serves it.
pub(crate) fn build() -> OpenApi {
    use utoipa::OpenApi as _;
    let mut doc = utoipa::openapi::OpenApiBuilder::new()
        .info(
            utoipa::openapi::InfoBuilder::new()
                .title("chorus")
                .version("1")
                .description(Some(
                    "The HTTP/JSON API of chorusd. Every error is a JSON body {\"error\": \
                     {\"code\", \"message\"}}. x-chorus-role says which role serves an operation \
                     (a box running both serves both); x-chorus-mutating marks calls that change \
                     state. Calls that act on a zone (transport, queue, zone volume) take \
                     ?zone=NAME; without it they act on the controller's first zone.",
                ))
                .build(),
        )
        .build();
    for (role, mut part) in [
        ("any", crate::daemon::CommonDoc::openapi()),
        ("controller", crate::controller::api::Doc::openapi()),
        ("speaker", crate::speaker::api::Doc::openapi()),
    ] {
        for item in part.paths.paths.values_mut() {
            let ops = [
                (false, &mut item.get),
                (true, &mut item.put),
                (true, &mut item.post),
                (true, &mut item.delete),
            ];
            for (mutating, op) in ops {
                if let Some(op) = op {
                    shared_answers(op, mutating);
                    // Unique across roles (a speaker's `status` and the daemon's).
                    op.operation_id = op.operation_id.take().map(|id| format!("{role}.{id}"));
                    op.tags = None;
                    let ext = op.extensions.get_or_insert_with(Default::default);
                    ext.insert("x-chorus-role".into(), json!(role));
                    if mutating {
                        ext.insert("x-chorus-mutating".into(), json!(true));
                    }
                }
            }
        }
        doc.merge(part);
    }
    doc
}

/// The answers every operation of its kind gives, where the handler's attribute does not say
/// more precisely.
fn shared_answers(op: &mut Operation, mutating: bool) {
    let body = op.request_body.is_some();
    let zoned = op
        .parameters
        .iter()
        .flatten()
        .any(|p| p.name == "zone" && matches!(p.parameter_in, ParameterIn::Query));
    let mut add = |code: &str, what: &str| {
        op.responses
            .responses
            .entry(code.to_string())
            .or_insert_with(|| error(what));
    };
    if mutating {
        add("401", "token missing or wrong");
        add("429", "too many calls that change state from this client");
    }
    if body {
        add("415", "body is not application/json");
        add(
            "422",
            "a field missing, unknown, of the wrong type or out of range",
        );
    }
    match (body, zoned) {
        (true, true) => add("400", "malformed JSON, or an unknown query parameter"),
        (true, false) => add("400", "malformed JSON"),
        (false, true) => add("400", "an unknown query parameter"),
        (false, false) => {}
    }
    if zoned {
        add("404", "no zone of that name");
    }
}

/// An error answer: `chorus_api::ErrorBody`.
fn error(description: &str) -> RefOr<utoipa::openapi::Response> {
    let schema = Ref::from_schema_name("ErrorBody");
    ResponseBuilder::new()
        .description(description)
        .content("application/json", Content::new(Some(schema)))
        .build()
        .into()
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    #[test]
    fn every_operation_says_its_role_and_every_schema_it_names_is_in_the_document() {
        let doc: Value = serde_json::from_str(super::document()).unwrap();
        if let Ok(path) = std::env::var("CHORUS_OPENAPI_OUT") {
            std::fs::write(path, super::document()).unwrap();
        }
        let mut ops = 0;
        let mut ids = std::collections::BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                ops += 1;
                assert!(ids.insert(op["operationId"].to_string()), "{method} {path}");
                let role = op["x-chorus-role"].as_str().unwrap_or_default();
                assert!(
                    ["any", "controller", "speaker"].contains(&role),
                    "{method} {path}"
                );
                assert_eq!(
                    op["x-chorus-mutating"] == true,
                    method != "get",
                    "{method} {path}"
                );
                assert!(op["responses"]["200"].is_object(), "{method} {path}");
            }
        }
        assert_eq!(ops, 33);
        // Every reference resolves.
        let text = super::document();
        for part in text.split("\"$ref\": \"#/components/schemas/").skip(1) {
            let name = &part[..part.find('"').unwrap()];
            assert!(doc["components"]["schemas"][name].is_object(), "{name}");
        }
        // Nested objects are described, not just "object".
        let status = &doc["components"]["schemas"]["SpeakerStatus"]["properties"];
        assert!(
            status["playout"].to_string().contains("PlayoutStatus"),
            "{status}"
        );
    }
}
