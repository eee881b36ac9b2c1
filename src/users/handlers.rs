//! The users API over HTTP: a thin mapping from requests to [`UserService`]
//! calls and from their outcomes to statuses and bodies.
//!
//! Everything here is a pure function of a [`ApiRequest`]; the rules live in the
//! service, the SQL in the repository. Errors are RFC 9457 problems:
//!
//! | outcome | status |
//! |---|---|
//! | body is not a JSON object (or repeats a member, or has more than 32) / path id not a positive integer / bad query / malformed `If-Match` | 400 |
//! | no such user | 404 |
//! | `If-Match` names none of the user's current version (it changed since it was read) | 412 |
//! | duplicate e-mail | 409 |
//! | wrong `Content-Type` | 415 |
//! | invalid fields (all listed in `errors`), reused `Idempotency-Key` | 422 |
//! | database unavailable or too slow | 503 + `Retry-After` |
//! | anything unexpected | 500 (details logged, not sent) |

use std::sync::Arc;
use std::time::SystemTime;

use serde_json::Value;

use crate::http::dispatch::ApiHandler;
use crate::http::method::Method;
use crate::http::pipeline::HandlerResult;
use crate::http::problem::Problem;
use crate::http::request::ApiRequest;
use crate::http::response::{ApiResponse, HeaderValue};
use crate::http::router::{RouteError, Router};
use crate::users::body::{self, Member};
use crate::users::idempotency::{fingerprint, IdempotencyKey};
use crate::users::validate::{self, parse_id};
use crate::users::version::{self, IfMatch};
use crate::users::{CreateUser, FieldError, ListParams, PatchUser, UserError, UserService};

/// The collection and item routes.
pub const COLLECTION: &str = "/api/v1/users";
pub const ITEM: &str = "/api/v1/users/{id}";

/// Problem type URIs for errors whose status alone is ambiguous.
const TYPE_VALIDATION: &str = "https://usersvc.dev/problems/validation";
const TYPE_CONFLICT: &str = "https://usersvc.dev/problems/email-taken";
const TYPE_IDEMPOTENCY: &str = "https://usersvc.dev/problems/idempotency-key-reused";

/// Adds the users routes to `router`.
pub fn routes(
    router: Router<ApiHandler>,
    users: Arc<UserService>,
) -> Result<Router<ApiHandler>, RouteError> {
    let (a, b, c, d, e) = (
        Arc::clone(&users),
        Arc::clone(&users),
        Arc::clone(&users),
        Arc::clone(&users),
        users,
    );
    router
        .route(Method::Post, COLLECTION, Box::new(move |r| create(&a, r)))?
        .route(Method::Get, COLLECTION, Box::new(move |r| list(&b, r)))?
        .route(Method::Get, ITEM, Box::new(move |r| get(&c, r)))?
        .route(Method::Patch, ITEM, Box::new(move |r| patch(&d, r)))?
        .route(Method::Delete, ITEM, Box::new(move |r| delete(&e, r)))
}

pub fn create(users: &UserService, req: &ApiRequest<'_>) -> HandlerResult {
    let Fields {
        name,
        email,
        type_errors,
    } = json_body(req, Unknown::Ignore)?;
    let input = CreateUser { name, email };
    if !type_errors.is_empty() {
        let rule_errors = validate::new_user(&input).err().unwrap_or_default();
        return Err(problem(UserError::Invalid(merge(type_errors, rule_errors))));
    }
    match req.header("Idempotency-Key") {
        None => {
            let user = users.create(&input).map_err(problem)?;
            Ok(ApiResponse::json_text(201, user.to_json_bytes())
                .with_header("Location", format!("{COLLECTION}/{}", user.id))
                .with_header("ETag", etag_of(user.updated_at)))
        }
        Some(raw) => {
            let key = IdempotencyKey::parse(raw)
                .map_err(|e| Problem::new(400, format!("Idempotency-Key: {}", e.message)))?;
            let outcome = users
                .create_idempotent(key.as_str(), &fingerprint(&input), &input)
                .map_err(problem)?;
            let stored = outcome.response;
            let mut resp = ApiResponse::json_text(stored.status, stored.body);
            if let Some(id) = stored.resource_id {
                resp = resp.with_header("Location", format!("{COLLECTION}/{id}"));
            }
            if let Some(v) = stored.version {
                resp = resp.with_header("ETag", etag_of(v));
            }
            if outcome.replayed {
                resp = resp.with_header("Idempotent-Replayed", "true");
            }
            Ok(resp)
        }
    }
}

pub fn get(users: &UserService, req: &ApiRequest<'_>) -> HandlerResult {
    let id = path_id(req)?;
    let user = users.get(id).map_err(problem)?;
    if let Some(raw) = req.header("If-None-Match") {
        let send = version::none_match(raw, user.updated_at)
            .map_err(|why| Problem::new(400, format!("If-None-Match: {why}")))?;
        if !send {
            // The client's copy is current (RFC 9110 §15.4.5): its tag, no body.
            return Ok(ApiResponse::empty(304).with_header("ETag", etag_of(user.updated_at)));
        }
    }
    Ok(ApiResponse::json_text(200, user.to_json_bytes())
        .with_header("ETag", etag_of(user.updated_at)))
}

/// The `ETag` header value of a user's version (its `updated_at`), held in place.
fn etag_of(updated_at: SystemTime) -> HeaderValue {
    HeaderValue::copied(version::etag(updated_at).as_bytes())
}

pub fn list(users: &UserService, req: &ApiRequest<'_>) -> HandlerResult {
    let limit = req.query_param("limit");
    let after = req.query_param("after");
    let params = ListParams::parse(limit.as_deref(), after.as_deref()).map_err(|errors| {
        Problem::new(400, "invalid query parameters")
            .with_type(TYPE_VALIDATION, "Invalid query parameters")
            .with_extension("errors", field_errors(&errors))
    })?;
    let page = users.list(&params).map_err(problem)?;
    Ok(ApiResponse::json_text(200, page.to_json_bytes()))
}

pub fn patch(users: &UserService, req: &ApiRequest<'_>) -> HandlerResult {
    let id = path_id(req)?;
    let Fields {
        name,
        email,
        type_errors,
    } = json_body(req, Unknown::Reject)?;
    let input = PatchUser { name, email };
    if !type_errors.is_empty() {
        let rule_errors = validate::changes(&input).err().unwrap_or_default();
        return Err(problem(UserError::Invalid(merge(type_errors, rule_errors))));
    }
    let if_match = if_match(req)?;
    let user = users.patch_if(id, &input, &if_match).map_err(problem)?;
    Ok(ApiResponse::json_text(200, user.to_json_bytes())
        .with_header("ETag", etag_of(user.updated_at)))
}

pub fn delete(users: &UserService, req: &ApiRequest<'_>) -> HandlerResult {
    let id = path_id(req)?;
    let if_match = if_match(req)?;
    users.delete_if(id, &if_match).map_err(problem)?;
    Ok(ApiResponse::empty(204))
}

/// The request's `If-Match` (none: any version); 400 when malformed.
fn if_match(req: &ApiRequest<'_>) -> Result<IfMatch, Problem> {
    match req.header("If-Match") {
        None => Ok(IfMatch::Any),
        Some(raw) => version::parse_if_match(raw)
            .map_err(|why| Problem::new(400, format!("If-Match: {why}"))),
    }
}

fn path_id(req: &ApiRequest<'_>) -> Result<i64, Problem> {
    let raw = req.params.get("id").unwrap_or("");
    parse_id(raw).ok_or_else(|| Problem::new(400, "the user id must be a positive integer"))
}

/// What to do with body members that are not fields of a user.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Unknown {
    /// Skip them (create: the required fields catch typos).
    Ignore,
    /// Report each as a field error (patch: a misspelt field must not turn
    /// into a silent no-op or a partial change).
    Reject,
}

/// The fields of a create/patch body, and the field errors of its shape.
struct Fields {
    name: Option<String>,
    email: Option<String>,
    type_errors: Vec<FieldError>,
}

/// Reads a JSON object body in one pass ([`body::decode`]): 415 unless
/// `Content-Type` is JSON, 400 unless the body is a JSON object without
/// duplicate members.
///
/// Members of the wrong JSON type (e.g. a number for `name`, or `null`) and,
/// with [`Unknown::Reject`], members that are no field are left out and
/// reported as field errors, so the caller can list them together with the
/// other fields' rule errors in one 422.
fn json_body(req: &ApiRequest<'_>, unknown: Unknown) -> Result<Fields, Problem> {
    let is_json = req.header("Content-Type").is_some_and(|ct| {
        let essence = ct.split(';').next().unwrap_or("").trim();
        essence.eq_ignore_ascii_case("application/json")
    });
    if !is_json {
        return Err(Problem::new(415, "the body must be application/json")
            .with_header("Accept", "application/json"));
    }
    let decoded = body::decode(req.body).map_err(|e| Problem::new(400, e.to_string()))?;
    let mut type_errors = Vec::new();
    let mut field = |name: &str, member: Member| match member {
        Member::Absent => None,
        Member::Text(s) => Some(s),
        Member::Other(kind) => {
            type_errors.push(FieldError::new(
                name,
                format!("must be a string, not {kind}"),
            ));
            None
        }
    };
    let name = field("name", decoded.name);
    let email = field("email", decoded.email);
    if unknown == Unknown::Reject {
        for member in decoded.unknown {
            type_errors.push(FieldError::new(
                &member,
                format!("is not a field; expected {}", FIELD_ORDER.join(" or ")),
            ));
        }
    }
    Ok(Fields {
        name,
        email,
        type_errors,
    })
}

/// The request fields in the order errors are listed.
const FIELD_ORDER: [&str; 2] = ["name", "email"];

/// One list of every invalid field: the type errors, plus the rule errors of
/// the fields that had the right type. A rule error about a field that was
/// left out because of its type ("is required", or the patch's "at least one
/// field") is dropped: the type error says what is wrong.
fn merge(type_errors: Vec<FieldError>, rule_errors: Vec<FieldError>) -> Vec<FieldError> {
    let mut all: Vec<FieldError> = rule_errors
        .into_iter()
        .filter(|e| e.field != "body" && !type_errors.iter().any(|t| t.field == e.field))
        .collect();
    all.extend(type_errors);
    all.sort_by_key(|e| {
        FIELD_ORDER
            .iter()
            .position(|f| *f == e.field)
            .unwrap_or(FIELD_ORDER.len())
    });
    all
}

fn field_errors(errors: &[FieldError]) -> Value {
    serde_json::to_value(errors).unwrap_or(Value::Null)
}

/// Maps a service outcome to a problem.
pub fn problem(e: UserError) -> Problem {
    match e {
        UserError::NotFound => Problem::new(404, "no user with that id"),
        UserError::VersionMismatch => Problem::new(
            412,
            "the user has changed since the version If-Match names; read it again",
        ),
        UserError::Conflict(detail) => {
            Problem::new(409, detail).with_type(TYPE_CONFLICT, "E-mail address already in use")
        }
        UserError::Invalid(errors) => Problem::new(422, "some fields are invalid")
            .with_type(TYPE_VALIDATION, "Invalid fields")
            .with_extension("errors", field_errors(&errors)),
        UserError::IdempotencyMismatch => Problem::new(
            422,
            "this Idempotency-Key was already used with a different request body",
        )
        .with_type(TYPE_IDEMPOTENCY, "Idempotency-Key reused"),
        UserError::Unavailable(reason) => {
            log::warn!(reason = reason.to_string().as_str(); "database unavailable");
            Problem::new(503, "the database is unavailable; retry shortly")
                .with_header("Retry-After", "1")
        }
        UserError::Internal(reason) => {
            log::error!(reason = reason.to_string().as_str(); "internal error");
            Problem::new(500, "the server hit an unexpected error")
        }
    }
}

/// The status table above, over an in-memory store: every status the
/// handlers map, through the real route table.
#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;
    use crate::http::request_id;
    use crate::http::router::Match;
    use crate::users::memory_repository::{Failure, MemoryUserRepository};

    struct Api {
        router: Router<ApiHandler>,
        store: MemoryUserRepository,
    }

    /// What a handler answered, problem or response.
    #[derive(Debug)]
    struct Answer {
        status: u16,
        body: Value,
        headers: Vec<(String, String)>,
    }

    impl Answer {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    fn api() -> Api {
        let store = MemoryUserRepository::new();
        let users = Arc::new(UserService::new(Arc::new(store.clone())));
        let router = routes(Router::new(), users).expect("routes");
        Api { router, store }
    }

    fn header(name: &str, value: &str) -> tiny_http::Header {
        tiny_http::Header::from_str(&format!("{name}: {value}")).expect("header")
    }

    impl Api {
        fn call(
            &self,
            method: Method,
            target: &str,
            headers: &[(&str, &str)],
            body: &str,
        ) -> Answer {
            let (path, query) = crate::http::request::split_target(target);
            let headers: Vec<_> = headers.iter().map(|(n, v)| header(n, v)).collect();
            let id = request_id::from_header(None);
            let Match::Found {
                handler,
                pattern,
                params,
                ..
            } = self.router.at(method, path)
            else {
                panic!("no route for {method} {path}");
            };
            let req = ApiRequest {
                method,
                path,
                query,
                route: pattern,
                params,
                request_id: &id,
                headers: &headers,
                body: body.as_bytes(),
            };
            match handler(&req) {
                Ok(r) => Answer {
                    status: r.status,
                    body: serde_json::from_slice(&r.body).unwrap_or(Value::Null),
                    headers: r
                        .headers
                        .iter()
                        .map(|(n, v)| (n.to_owned(), v.to_owned()))
                        .collect(),
                },
                Err(p) => Answer {
                    status: p.status,
                    body: Value::String(p.detail.to_string()),
                    headers: p
                        .headers
                        .iter()
                        .map(|(n, v)| ((*n).to_owned(), v.to_string()))
                        .collect(),
                },
            }
        }

        fn post(&self, body: &str) -> Answer {
            self.call(
                Method::Post,
                COLLECTION,
                &[("Content-Type", "application/json")],
                body,
            )
        }
    }

    const ADA: &str = r#"{"name":"Ada","email":"ada@example.com"}"#;

    /// (what, method, target, headers, body, expected status)
    type Case<'a> = (
        &'a str,
        Method,
        &'a str,
        &'a [(&'a str, &'a str)],
        &'a str,
        u16,
    );

    #[test]
    fn every_mapped_status() {
        let api = api();
        let created = api.post(ADA);
        assert_eq!(created.status, 201, "{created:?}");
        assert_eq!(created.header("Location"), Some("/api/v1/users/1"));
        let json = [("Content-Type", "application/json")];
        let cases: &[Case<'_>] = &[
            ("found", Method::Get, "/api/v1/users/1", &[], "", 200),
            ("listed", Method::Get, "/api/v1/users?limit=5", &[], "", 200),
            (
                "bad path id",
                Method::Get,
                "/api/v1/users/abc",
                &[],
                "",
                400,
            ),
            (
                "bad query",
                Method::Get,
                "/api/v1/users?limit=0",
                &[],
                "",
                400,
            ),
            (
                "body not an object",
                Method::Post,
                COLLECTION,
                &json,
                "[1]",
                400,
            ),
            ("body not JSON", Method::Post, COLLECTION, &json, "{", 400),
            (
                "no such user",
                Method::Get,
                "/api/v1/users/99",
                &[],
                "",
                404,
            ),
            (
                "delete unknown",
                Method::Delete,
                "/api/v1/users/99",
                &[],
                "",
                404,
            ),
            (
                "delete unknown, conditional: 404 before 412",
                Method::Delete,
                "/api/v1/users/99",
                &[("If-Match", "\"1\"")],
                "",
                404,
            ),
            (
                "stale version",
                Method::Patch,
                "/api/v1/users/1",
                &[("Content-Type", "application/json"), ("If-Match", "\"1\"")],
                r#"{"name":"Bea"}"#,
                412,
            ),
            (
                "stale version, delete",
                Method::Delete,
                "/api/v1/users/1",
                &[("If-Match", "W/\"1\", \"2\"")],
                "",
                412,
            ),
            (
                "malformed If-Match",
                Method::Delete,
                "/api/v1/users/1",
                &[("If-Match", "1")],
                "",
                400,
            ),
            ("e-mail taken", Method::Post, COLLECTION, &json, ADA, 409),
            (
                "not JSON",
                Method::Post,
                COLLECTION,
                &[("Content-Type", "text/plain")],
                ADA,
                415,
            ),
            (
                "no content type",
                Method::Patch,
                "/api/v1/users/1",
                &[],
                "{}",
                415,
            ),
            (
                "invalid fields",
                Method::Post,
                COLLECTION,
                &json,
                r#"{"name":"","email":"x"}"#,
                422,
            ),
            (
                "empty patch",
                Method::Patch,
                "/api/v1/users/1",
                &json,
                "{}",
                422,
            ),
            ("deleted", Method::Delete, "/api/v1/users/1", &[], "", 204),
        ];
        for (what, method, target, headers, body, status) in cases {
            let answer = api.call(*method, target, headers, body);
            assert_eq!(answer.status, *status, "{what}: {answer:?}");
        }
    }

    #[test]
    fn idempotency_key_replays_and_refuses_another_body() {
        let api = api();
        let key = [
            ("Content-Type", "application/json"),
            ("Idempotency-Key", "k-1"),
        ];
        let first = api.call(Method::Post, COLLECTION, &key, ADA);
        assert_eq!(first.status, 201, "{first:?}");
        let again = api.call(Method::Post, COLLECTION, &key, ADA);
        assert_eq!(again.status, 201);
        assert_eq!(again.header("Idempotent-Replayed"), Some("true"));
        assert_eq!(again.body, first.body);
        // The replay names the same version as the first answer, and it is
        // the user's: a GET of the Location carries the same tag.
        let tag = first
            .header("ETag")
            .expect("a keyed create carries an ETag");
        assert_eq!(again.header("ETag"), Some(tag));
        let location = first.header("Location").expect("Location");
        assert_eq!(
            api.call(Method::Get, location, &[], "").header("ETag"),
            Some(tag)
        );
        let other = api.call(
            Method::Post,
            COLLECTION,
            &key,
            r#"{"name":"Bob","email":"bob@example.com"}"#,
        );
        assert_eq!(other.status, 422, "{other:?}");
        let bad_key = api.call(
            Method::Post,
            COLLECTION,
            &[
                ("Content-Type", "application/json"),
                ("Idempotency-Key", ""),
            ],
            ADA,
        );
        assert_eq!(bad_key.status, 400, "{bad_key:?}");
    }

    #[test]
    fn an_unreachable_store_is_503_with_retry_after_and_a_broken_one_500() {
        let api = api();
        api.store.fail_with(Some(Failure::Unavailable));
        for (method, target, body) in [
            (Method::Get, "/api/v1/users/1", ""),
            (Method::Get, "/api/v1/users", ""),
            (Method::Post, COLLECTION, ADA),
            (Method::Patch, "/api/v1/users/1", r#"{"name":"B"}"#),
            (Method::Delete, "/api/v1/users/1", ""),
        ] {
            let answer = api.call(
                method,
                target,
                &[("Content-Type", "application/json")],
                body,
            );
            assert_eq!(answer.status, 503, "{method} {target}: {answer:?}");
            assert_eq!(answer.header("Retry-After"), Some("1"));
        }
        api.store.fail_with(Some(Failure::Internal));
        let answer = api.call(Method::Get, "/api/v1/users/1", &[], "");
        assert_eq!(answer.status, 500, "{answer:?}");
        assert!(
            !answer.body.to_string().contains("broken on purpose"),
            "details are logged, not sent: {answer:?}"
        );
    }

    #[test]
    fn list_and_single_user_objects_are_the_same_bytes_in_memory_too() {
        let api = api();
        assert_eq!(api.post(ADA).status, 201);
        let one = api.call(Method::Get, "/api/v1/users/1", &[], "");
        let page = api.call(Method::Get, "/api/v1/users", &[], "");
        assert_eq!(page.body["users"][0], one.body);
    }
}
