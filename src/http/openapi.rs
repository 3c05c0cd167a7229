//! The OpenAPI 3.1 document of every route, generated from the handlers' `#[utoipa::path]`
//! annotations as the routers are built: each route is registered once, through utoipa-axum's
//! `routes!`, which adds it to the router and its operation to the document together. The
//! answers a layer gives (the bearer token check, the body read limits) are documented where the
//! layer is added ([`behind_token`], [`with_answers`]).
//!
//! The document is committed as `schemas/openapi.json` and served at `GET /v1/openapi.json`. The
//! test below fails when the committed file differs from what the code generates. After
//! changing a route, regenerate it with `DESKGATE_WRITE_SCHEMAS=1 cargo test --lib http::openapi`.

use std::sync::LazyLock;

use axum::response::{IntoResponse, Response};
use http::header;
use utoipa::openapi::content::Content;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{OpenApi, Ref};
use utoipa_axum::router::OpenApiRouter;

use super::error::ErrorBody;
use super::routes::AppState;

/// The name of the bearer token's security scheme.
const BEARER: &str = "bearer";

/// The parts no handler states: what deskgate is, its listeners, and the error body.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "deskgate",
        description = "The HTTP API of deskgate, the channel gateway in front of a help desk's \
            ticket store (docs/http-api.md). With `server.control_listen` set, the routes \
            tagged `hooks`, `health` and `schemas` are served on `server.listen` and the others \
            on `server.control_listen`; without it, all on `server.listen`. Every error answer \
            is an `ErrorBody`, also a wrong method (405) and an unknown path (404)."
    ),
    components(schemas(ErrorBody)),
    tags(
        (name = "hooks", description = "Inbound channels: each checks its own signatures (public listener)."),
        (name = "health", description = "Liveness and readiness, and a chat widget's availability question (public listener)."),
        (name = "schemas", description = "The JSON Schemas that events name in `dataschema` (public listener)."),
        (name = "events", description = "The events feed the ticket store pulls (control listener)."),
        (name = "status", description = "Positions, metrics and this document (control listener)."),
        (name = "control", description = "The control API: needs `Authorization: Bearer <token>` with a token from `control.token_files` (control listener)."),
    ),
)]
struct Base;

/// The document of every route the routers serve.
pub fn document() -> OpenApi {
    let mut document = <Base as utoipa::OpenApi>::openapi();
    let routes = with_answers(super::routes::documented_routes(), INTERNAL_ANSWER);
    let routes = routes.into_openapi();
    document.paths = routes.paths;
    let components = document.components.get_or_insert_with(Default::default);
    components
        .schemas
        .extend(routes.components.unwrap_or_default().schemas);
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "One of the tokens read from `control.token_files` (never inline in the config).",
                ))
                .build(),
        ),
    );
    document
}

/// The document as served and committed: pretty JSON with a final newline.
pub fn text() -> &'static str {
    static TEXT: LazyLock<String> = LazyLock::new(|| {
        let mut text = serde_json::to_string_pretty(&document()).expect("a document is plain JSON");
        text.push('\n');
        text
    });
    &TEXT
}

/// `GET /v1/openapi.json`: this document.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "status",
    responses((status = 200, description = "This OpenAPI 3.1 document, as committed in `schemas/openapi.json`.", body = Object)),
)]
pub async fn openapi_json() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], text()).into_response()
}

/// Whether a group of routes needs the bearer token.
pub enum Token {
    Required,
    /// Only with `events.require_token`.
    IfConfigured,
}

/// Documents the bearer token check ([`super::control::require_token`]) on every route of
/// `routes`: the security requirement and its 401.
pub fn behind_token(mut routes: OpenApiRouter<AppState>, token: Token) -> OpenApiRouter<AppState> {
    let required = SecurityRequirement::new(BEARER, Vec::<String>::new());
    let (security, description) = match token {
        Token::Required => (vec![required], "No valid bearer token."),
        Token::IfConfigured => (
            // `{}` first: no token needed unless configured.
            vec![SecurityRequirement::default(), required],
            "With `events.require_token`: no valid bearer token.",
        ),
    };
    let www_authenticate = HeaderBuilder::new()
        .schema(Some(<String as utoipa::PartialSchema>::schema()))
        .description(Some("`Bearer`"))
        .build();
    for operation in operations(routes.get_openapi_mut()) {
        operation.security = Some(security.clone());
        let response = error_response(description)
            .header(header::WWW_AUTHENTICATE.as_str(), www_authenticate.clone());
        add_response(operation, 401, response.build());
    }
    routes
}

/// An answer a layer gives on every route it guards.
pub struct Answer {
    status: u16,
    description: &'static str,
}

/// What reading a control or events request's body in advance answers
/// (`super::body::buffered_body`).
pub const BODY_READ_ANSWERS: &[Answer] = &[
    Answer {
        status: 408,
        description: "The request body did not arrive within `server.body_read_timeout_secs`.",
    },
    Answer {
        status: 413,
        description: "The request body is over the control API's limit of 2 MiB.",
    },
];

/// What any route answers when its handler fails inside (a store error) or panics.
const INTERNAL_ANSWER: &[Answer] = &[Answer {
    status: 500,
    description:
        "An internal error: the state could not be read or written, or the handler failed.",
}];

/// Documents `answers` on every route of `routes` that does not document that status itself.
pub fn with_answers(
    mut routes: OpenApiRouter<AppState>,
    answers: &[Answer],
) -> OpenApiRouter<AppState> {
    for operation in operations(routes.get_openapi_mut()) {
        for answer in answers {
            add_response(
                operation,
                answer.status,
                error_response(answer.description).build(),
            );
        }
    }
    routes
}

/// A response with an [`ErrorBody`].
fn error_response(description: &str) -> utoipa::openapi::ResponseBuilder {
    let body = Content::new(Some(Ref::from_schema_name("ErrorBody")));
    utoipa::openapi::ResponseBuilder::new()
        .description(description)
        .content("application/json", body)
}

/// Adds `response` for `status` unless the operation documents that status already.
fn add_response(operation: &mut Operation, status: u16, response: utoipa::openapi::Response) {
    operation
        .responses
        .responses
        .entry(status.to_string())
        .or_insert(response.into());
}

/// Every operation of every path of `document`.
fn operations(document: &mut OpenApi) -> impl Iterator<Item = &mut Operation> {
    document.paths.paths.values_mut().flat_map(|item| {
        [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ]
        .into_iter()
        .flatten()
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::{Path, PathBuf};

    use serde_json::Value;

    use super::*;

    fn schemas_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas")
    }

    /// The committed document is what the code generates. `DESKGATE_WRITE_SCHEMAS=1` rewrites
    /// it instead.
    #[test]
    fn committed_document_is_what_the_routes_generate() {
        let file = schemas_dir().join("openapi.json");
        if std::env::var_os("DESKGATE_WRITE_SCHEMAS").is_some() {
            std::fs::write(&file, text()).unwrap();
        }
        let found = std::fs::read_to_string(&file).unwrap_or_default();
        assert!(
            found == text(),
            "{} differs from the generated document\n\
             regenerate: DESKGATE_WRITE_SCHEMAS=1 cargo test --lib http::openapi",
            file.display()
        );
    }

    /// The document is valid against the official JSON Schema of OpenAPI 3.1
    /// (`schemas/openapi-3.1.schema.json`, https://spec.openapis.org/oas/3.1/schema/2022-10-07),
    /// each of its schemas is a valid JSON Schema 2020-12, and it is consistent in what that
    /// schema cannot check: every `$ref` resolves, every path's `{parameters}` are declared
    /// and no others, and no two operations share an id.
    #[test]
    fn the_document_is_valid_openapi_3_1() {
        let document: Value = serde_json::from_str(text()).unwrap();
        let mut problems = Vec::new();
        let text = std::fs::read_to_string(schemas_dir().join("openapi-3.1.schema.json")).unwrap();
        let oas: Value = serde_json::from_str(&text).unwrap();
        let validator = jsonschema::draft202012::new(&oas).unwrap();
        for error in validator.iter_errors(&document) {
            problems.push(format!("{error} at {}", error.instance_path()));
        }
        for (name, schema) in document["components"]["schemas"].as_object().unwrap() {
            if !jsonschema::draft202012::meta::is_valid(schema) {
                problems.push(format!("components.schemas.{name} is not a JSON Schema"));
            }
        }
        check_refs(&document, &document, &mut problems);
        let mut ids = BTreeSet::new();
        for (path, method, operation) in operations_of(&document) {
            let templated: BTreeSet<&str> = path
                .split('/')
                .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
                .collect();
            let declared: BTreeSet<&str> = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "path")
                .filter_map(|p| p["name"].as_str())
                .collect();
            if templated != declared {
                problems.push(format!(
                    "{method} {path}: path parameters {declared:?}, template {templated:?}"
                ));
            }
            let id = operation["operationId"].as_str().unwrap_or_default();
            if !ids.insert(id.to_owned()) {
                problems.push(format!("{method} {path}: operationId {id:?} is taken"));
            }
            if operation["responses"]
                .as_object()
                .is_none_or(|r| r.is_empty())
            {
                problems.push(format!("{method} {path}: no responses"));
            }
        }
        assert!(problems.is_empty(), "{problems:#?}");
    }

    /// The operator and store docs (`docs/*.md`) name every route the document has, as
    /// `` `METHOD /path` ``, and no route it does not have: the pages cannot drift from the
    /// router any more than the document can. Parameter names may differ (`{id}`, `{type}.json`).
    #[test]
    fn the_docs_name_exactly_the_documented_routes() {
        fn shape(path: &str) -> String {
            path.split('/')
                .map(|segment| {
                    if segment.starts_with('{') {
                        "{}"
                    } else {
                        segment
                    }
                })
                .collect::<Vec<_>>()
                .join("/")
        }
        const METHODS: [&str; 5] = ["GET", "POST", "PUT", "DELETE", "PATCH"];
        let document: Value = serde_json::from_str(text()).unwrap();
        let served: BTreeSet<(String, String)> = operations_of(&document)
            .into_iter()
            .filter(|(_, method, _)| METHODS.contains(&method.to_uppercase().as_str()))
            .map(|(path, method, _)| (method.to_uppercase(), shape(path)))
            .collect();
        // Other services' routes quoted in the docs (the Graph API's `/{id}/messages`) start
        // with a segment deskgate has no route under.
        let ours: BTreeSet<String> = served
            .iter()
            .filter_map(|(_, path)| path.split('/').nth(1).map(str::to_owned))
            .collect();
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
        let mut named = BTreeSet::new();
        for entry in std::fs::read_dir(&docs).unwrap() {
            let page = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            // `GET /path`, `GET and PUT /path`, `PUT /path?query`
            for quoted in page.split('`').skip(1).step_by(2) {
                let words: Vec<&str> = quoted.split_whitespace().collect();
                let Some(path) = words.iter().find(|w| w.starts_with('/')) else {
                    continue;
                };
                let methods: Vec<&str> = words
                    .iter()
                    .copied()
                    .take_while(|w| !w.starts_with('/'))
                    .filter(|w| *w != "and")
                    .collect();
                if methods.is_empty() || !methods.iter().all(|m| METHODS.contains(m)) {
                    continue;
                }
                let path = path.split('?').next().unwrap();
                if !path
                    .split('/')
                    .nth(1)
                    .is_some_and(|first| ours.contains(first))
                {
                    continue;
                }
                for method in methods {
                    named.insert((method.to_owned(), shape(path)));
                }
            }
        }
        let undocumented: Vec<_> = served.difference(&named).collect();
        let unserved: Vec<_> = named.difference(&served).collect();
        assert!(
            undocumented.is_empty() && unserved.is_empty(),
            "routes no page of docs/ names: {undocumented:?}\n\
             routes docs/ names that the document does not have: {unserved:?}"
        );
    }

    /// Every `(path, method, operation)` of the document.
    fn operations_of(document: &Value) -> Vec<(&str, &str, &Value)> {
        let mut operations = Vec::new();
        for (path, item) in document["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                operations.push((path.as_str(), method.as_str(), operation));
            }
        }
        operations
    }

    /// Reports every `$ref` below `value` that does not point into `document`.
    fn check_refs(document: &Value, value: &Value, problems: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(reference) = map.get("$ref").and_then(Value::as_str) {
                    let target = reference
                        .strip_prefix('#')
                        .and_then(|pointer| document.pointer(pointer));
                    if target.is_none() {
                        problems.push(format!("$ref {reference} points nowhere"));
                    }
                }
                map.values().for_each(|v| check_refs(document, v, problems));
            }
            Value::Array(items) => items.iter().for_each(|v| check_refs(document, v, problems)),
            _ => {}
        }
    }
}
