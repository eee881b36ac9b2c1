//! Method + path routing with `{param}` segments.
//!
//! A route is found by its literal prefix (the pattern up to its first
//! parameter, compared at once), then its parameters, segment by segment;
//! the matched *pattern* (e.g.
//! `/api/v1/users/{id}`), not the raw path, is what logs, metrics and traces
//! use, so their cardinality is bounded by the route table. A path that
//! matches a pattern but not the method gets 405 with the `Allow` list
//! computed once at build time; HEAD is served by the GET handler.
//!
//! Matching allocates nothing: parameters are slices of the request path.
//! A request is routed once, on the I/O thread: the match also comes as a
//! [`Routed`] (indexes and byte ranges, no borrows) that travels with the
//! job, and the worker gets its handler and parameters back with
//! [`Router::found`].

use crate::http::method::Method;

/// Most parameters any route has; `{a}/{b}/{c}/{d}` is plenty for this API.
const MAX_PARAMS: usize = 4;

/// Most segments any route has; a longer request path matches no route.
const MAX_SEGMENTS: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(&'static str),
    Param(&'static str),
}

struct Route<H> {
    pattern: &'static str,
    segments: Vec<Segment>,
    /// The pattern up to its first parameter (all of it when it has none):
    /// a path that does not start with it is not this route, found with one
    /// comparison. `segments[literal..]` are the segments after it.
    prefix: &'static str,
    literal: usize,
    handlers: Vec<(Method, H)>,
    allow: String,
}

/// A routing table, built once at start-up and shared read-only by every
/// thread.
pub struct Router<H> {
    routes: Vec<Route<H>>,
    /// Every method any route takes: the `Allow` of `OPTIONS *`.
    allow_any: String,
}

/// The outcome of routing one request.
pub enum Match<'r, 'p, H> {
    Found {
        handler: &'r H,
        pattern: &'static str,
        params: Params<'p>,
        /// The same answer without borrows, for [`Router::found`].
        routed: Routed,
    },
    /// The path exists but not for this method; `allow` is the header value.
    MethodNotAllowed {
        pattern: &'static str,
        allow: &'r str,
    },
    /// `OPTIONS *` (RFC 9110 §9.3.7): a question about the server, not a
    /// resource; `allow` is every method some route takes.
    ServerOptions {
        allow: &'r str,
    },
    NotFound,
}

/// Path parameters of a matched route, borrowed from the request path.
#[derive(Debug, Clone, Copy, Default)]
pub struct Params<'p> {
    items: [(&'static str, &'p str); MAX_PARAMS],
    len: usize,
}

impl<'p> Params<'p> {
    pub fn get(&self, name: &str) -> Option<&'p str> {
        self.items[..self.len]
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Which handler a request was routed to and where its parameters lie in
/// its path, borrowing nothing: the I/O thread routes a request, the worker
/// that runs it gets the handler back from this ([`Router::found`]) instead
/// of routing it again.
#[derive(Debug, Clone, Copy)]
pub struct Routed {
    route: usize,
    handler: usize,
    /// Byte ranges of the parameters in the path, in the route's order.
    spans: [(u32, u32); MAX_PARAMS],
    len: usize,
}

/// A malformed route table; a programming error caught at start-up and in tests.
#[derive(Debug, PartialEq, Eq)]
pub struct RouteError(pub String);

impl std::fmt::Display for RouteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RouteError {}

impl<H> Default for Router<H> {
    fn default() -> Self {
        Router {
            routes: Vec::new(),
            allow_any: String::new(),
        }
    }
}

impl<H> Router<H> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `method pattern → handler`. Patterns start with `/`; a segment
    /// `{name}` matches any one non-empty segment.
    pub fn route(
        mut self,
        method: Method,
        pattern: &'static str,
        handler: H,
    ) -> Result<Self, RouteError> {
        if method == Method::Other {
            return Err(RouteError(format!(
                "{pattern}: cannot route method `other`"
            )));
        }
        let segments = parse_pattern(pattern)?;
        let route = match self
            .routes
            .iter_mut()
            .position(|r| same_shape(&r.segments, &segments))
        {
            Some(i) => &mut self.routes[i],
            None => {
                let literal = segments
                    .iter()
                    .take_while(|s| matches!(s, Segment::Literal(_)))
                    .count();
                let prefix = pattern.find('{').map_or(pattern, |at| &pattern[..at]);
                self.routes.push(Route {
                    pattern,
                    segments,
                    prefix,
                    literal,
                    handlers: Vec::new(),
                    allow: String::new(),
                });
                let last = self.routes.len() - 1;
                &mut self.routes[last]
            }
        };
        if route.pattern != pattern {
            return Err(RouteError(format!(
                "{pattern} and {} are the same route with different parameter names",
                route.pattern
            )));
        }
        if route.handlers.iter().any(|(m, _)| *m == method) {
            return Err(RouteError(format!("{method} {pattern} is routed twice")));
        }
        route.handlers.push((method, handler));
        route.allow = allow_header(&route.handlers);
        let every: Vec<(Method, ())> = self
            .routes
            .iter()
            .flat_map(|r| r.handlers.iter().map(|(m, _)| (*m, ())))
            .collect();
        self.allow_any = allow_header(&every);
        Ok(self)
    }

    /// Routes a request. `path` is the path without the query string.
    pub fn at<'r, 'p>(&'r self, method: Method, path: &'p str) -> Match<'r, 'p, H> {
        if path == "*" && method == Method::Options {
            return Match::ServerOptions {
                allow: &self.allow_any,
            };
        }
        for (route_index, route) in self.routes.iter().enumerate() {
            let Some(params) = match_path(route, path) else {
                continue;
            };
            let wanted = |m: Method| {
                route
                    .handlers
                    .iter()
                    .enumerate()
                    .find(|(_, (hm, _))| *hm == m)
            };
            let found = wanted(method).or_else(|| {
                if method == Method::Head {
                    wanted(Method::Get)
                } else {
                    None
                }
            });
            return match found {
                Some((handler_index, (_, handler))) => Match::Found {
                    handler,
                    pattern: route.pattern,
                    routed: Routed::new(route_index, handler_index, path, &params),
                    params,
                },
                None => Match::MethodNotAllowed {
                    pattern: route.pattern,
                    allow: &route.allow,
                },
            };
        }
        Match::NotFound
    }

    /// The handler, pattern and parameters [`Router::at`] found for `path`
    /// (the same path: the spans index it). `None` only for a `routed`
    /// from another table.
    pub fn found<'r, 'p>(
        &'r self,
        routed: &Routed,
        path: &'p str,
    ) -> Option<(&'r H, &'static str, Params<'p>)> {
        let route = self.routes.get(routed.route)?;
        let (_, handler) = route.handlers.get(routed.handler)?;
        let names = route.segments.iter().filter_map(|s| match s {
            Segment::Param(name) => Some(*name),
            Segment::Literal(_) => None,
        });
        let mut params = Params::default();
        for (name, &(start, end)) in names.zip(&routed.spans[..routed.len]) {
            let value = path.get(start as usize..end as usize)?;
            params.items[params.len] = (name, value);
            params.len += 1;
        }
        Some((handler, route.pattern, params))
    }

    /// Every route pattern, e.g. to pre-register metric series.
    pub fn patterns(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.routes.iter().map(|r| r.pattern)
    }
}

impl Routed {
    /// `params` are slices of `path` (they come from splitting it): each
    /// one's range is its address's offset from the path's.
    fn new(route: usize, handler: usize, path: &str, params: &Params<'_>) -> Routed {
        let base = path.as_ptr() as usize;
        let mut spans = [(0, 0); MAX_PARAMS];
        for (span, (_, value)) in spans.iter_mut().zip(&params.items[..params.len]) {
            let start = value.as_ptr() as usize - base;
            // A path is at most a request head long (`MAX_HEADER_BYTES`).
            *span = (start as u32, (start + value.len()) as u32);
        }
        Routed {
            route,
            handler,
            spans,
            len: params.len,
        }
    }
}

fn parse_pattern(pattern: &'static str) -> Result<Vec<Segment>, RouteError> {
    let Some(rest) = pattern.strip_prefix('/') else {
        return Err(RouteError(format!("{pattern}: a pattern starts with `/`")));
    };
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    let mut segments = Vec::new();
    let mut params = 0;
    for seg in rest.split('/') {
        if seg.is_empty() {
            return Err(RouteError(format!("{pattern}: empty segment")));
        }
        if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            if name.is_empty() || name.contains(['{', '}']) {
                return Err(RouteError(format!("{pattern}: bad parameter `{seg}`")));
            }
            params += 1;
            segments.push(Segment::Param(name));
        } else if seg.contains(['{', '}']) {
            return Err(RouteError(format!("{pattern}: bad segment `{seg}`")));
        } else {
            segments.push(Segment::Literal(seg));
        }
    }
    if segments.len() > MAX_SEGMENTS {
        return Err(RouteError(format!(
            "{pattern}: more than {MAX_SEGMENTS} segments"
        )));
    }
    if params > MAX_PARAMS {
        return Err(RouteError(format!(
            "{pattern}: more than {MAX_PARAMS} parameters"
        )));
    }
    Ok(segments)
}

/// Two patterns are the same route when they differ only in parameter names.
fn same_shape(a: &[Segment], b: &[Segment]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| match (x, y) {
            (Segment::Literal(l), Segment::Literal(r)) => l == r,
            (Segment::Param(_), Segment::Param(_)) => true,
            _ => false,
        })
}

/// The parameters of `path` when it is a path of `route`: its literal
/// prefix compared at once, then the rest walked segment by segment against
/// the pattern (no array of segments is built per request).
fn match_path<'p, H>(route: &Route<H>, path: &'p str) -> Option<Params<'p>> {
    let mut rest = path.strip_prefix(route.prefix)?;
    let mut params = Params::default();
    let Some((last, before)) = route.segments[route.literal..].split_last() else {
        // All literal: the prefix is the whole pattern.
        return rest.is_empty().then_some(params);
    };
    for seg in before {
        // `/` is ASCII: every index found is a char boundary.
        let end = rest.bytes().position(|b| b == b'/')?;
        match_segment(seg, &rest[..end], &mut params)?;
        rest = &rest[end + 1..];
    }
    if rest.bytes().any(|b| b == b'/') {
        return None;
    }
    match_segment(last, rest, &mut params)?;
    Some(params)
}

/// Whether one segment of a path matches one of a pattern; a parameter's
/// value is kept in `params` (a parameter is never empty).
fn match_segment<'p>(seg: &Segment, part: &'p str, params: &mut Params<'p>) -> Option<()> {
    match seg {
        Segment::Literal(lit) => (*lit == part).then_some(()),
        Segment::Param(_) if part.is_empty() => None,
        Segment::Param(name) => {
            // A pattern has at most MAX_PARAMS parameters (`parse_pattern`).
            *params.items.get_mut(params.len)? = (name, part);
            params.len += 1;
            Some(())
        }
    }
}

fn allow_header<H>(handlers: &[(Method, H)]) -> String {
    let has = |m: Method| handlers.iter().any(|(hm, _)| *hm == m);
    Method::ALL
        .iter()
        .filter(|m| has(**m) || (**m == Method::Head && has(Method::Get)))
        .map(|m| m.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Router<&'static str> {
        Router::new()
            .route(Method::Get, "/", "root")
            .and_then(|r| r.route(Method::Get, "/api/v1/users", "list"))
            .and_then(|r| r.route(Method::Post, "/api/v1/users", "create"))
            .and_then(|r| r.route(Method::Get, "/api/v1/users/{id}", "get"))
            .and_then(|r| r.route(Method::Patch, "/api/v1/users/{id}", "patch"))
            .and_then(|r| r.route(Method::Delete, "/api/v1/users/{id}", "delete"))
            .and_then(|r| r.route(Method::Get, "/a/{x}/b/{y}", "two"))
            .expect("valid table")
    }

    fn found(r: &Router<&'static str>, m: Method, p: &str) -> Option<(&'static str, &'static str)> {
        match r.at(m, p) {
            Match::Found {
                handler, pattern, ..
            } => Some((*handler, pattern)),
            _ => None,
        }
    }

    #[test]
    fn matches_literals_params_and_reports_the_pattern() {
        let r = table();
        let cases = [
            (Method::Get, "/", Some(("root", "/"))),
            (
                Method::Get,
                "/api/v1/users",
                Some(("list", "/api/v1/users")),
            ),
            (
                Method::Post,
                "/api/v1/users",
                Some(("create", "/api/v1/users")),
            ),
            (
                Method::Get,
                "/api/v1/users/42",
                Some(("get", "/api/v1/users/{id}")),
            ),
            (
                Method::Delete,
                "/api/v1/users/x",
                Some(("delete", "/api/v1/users/{id}")),
            ),
            (
                Method::Head,
                "/api/v1/users/7",
                Some(("get", "/api/v1/users/{id}")),
            ),
            (Method::Get, "/api/v1/users/", None),
            (Method::Get, "/api/v1/users/1/2", None),
            (Method::Get, "/api/v1/user", None),
            (Method::Get, "", None),
            (Method::Get, "//", None),
            (Method::Get, "/nope", None),
            (Method::Get, "api/v1/users", None),
            (Method::Get, "/api//users", None),
            (Method::Get, "/a//b/c", None),
            (Method::Get, "/a/1/b/", None),
            (Method::Get, "/a/1/b/2/", None),
        ];
        for (m, p, want) in cases {
            assert_eq!(found(&r, m, p), want, "{m} {p}");
        }
    }

    #[test]
    fn paths_deeper_than_any_route_match_nothing() {
        let deep = "/x".repeat(MAX_SEGMENTS);
        let r = Router::new()
            .route(
                Method::Get,
                Box::leak(deep.clone().into_boxed_str()),
                "deep",
            )
            .expect("valid table");
        assert!(matches!(r.at(Method::Get, &deep), Match::Found { .. }));
        let deeper = format!("{deep}/x");
        assert!(matches!(r.at(Method::Get, &deeper), Match::NotFound));
        let too_deep: &'static str = Box::leak(deeper.into_boxed_str());
        assert!(Router::new().route(Method::Get, too_deep, "x").is_err());
    }

    #[test]
    fn params_are_slices_of_the_path() {
        let r = table();
        match r.at(Method::Get, "/a/1/b/two") {
            Match::Found { params, .. } => {
                assert_eq!(params.get("x"), Some("1"));
                assert_eq!(params.get("y"), Some("two"));
                assert_eq!(params.get("z"), None);
                assert_eq!(params.len(), 2);
            }
            _ => panic!("no match"),
        }
    }

    /// What the worker gets back from a [`Routed`] is what routing found:
    /// handler, pattern and every parameter, HEAD served by GET included.
    #[test]
    fn found_gives_back_what_at_matched() {
        let t = Router::new()
            .route(Method::Get, "/a/{x}/b/{y}", "ab")
            .and_then(|r| r.route(Method::Delete, "/a/{x}/b/{y}", "ab-delete"))
            .and_then(|r| r.route(Method::Get, "/users/{id}", "user"))
            .unwrap_or_else(|e| panic!("{e:?}"));
        for (method, path) in [
            (Method::Get, "/a/1/b/two"),
            (Method::Delete, "/a/%C3%A9/b/2"),
            (Method::Head, "/users/42"),
            (Method::Get, "/users/42"),
        ] {
            let Match::Found {
                handler,
                pattern,
                params,
                routed,
            } = t.at(method, path)
            else {
                panic!("{method} {path}: no match");
            };
            // The worker has its own copy of the path, at another address.
            let copy = path.to_owned();
            let (h, p, got) = t.found(&routed, &copy).unwrap_or_else(|| panic!("{path}"));
            assert_eq!((*h, p), (*handler, pattern), "{method} {path}");
            assert_eq!(got.len(), params.len());
            for name in ["x", "y", "id"] {
                assert_eq!(got.get(name), params.get(name), "{path} {name}");
            }
        }
    }

    #[test]
    fn options_asterisk_lists_every_method_of_the_table() {
        let t = table();
        match t.at(Method::Options, "*") {
            Match::ServerOptions { allow } => {
                assert_eq!(allow, "GET, HEAD, POST, PATCH, DELETE");
            }
            _ => panic!("want the server's options"),
        }
        assert!(matches!(t.at(Method::Get, "*"), Match::NotFound));
    }

    #[test]
    fn wrong_method_is_405_with_allow_and_unknown_is_404() {
        let r = table();
        match r.at(Method::Put, "/api/v1/users/1") {
            Match::MethodNotAllowed { pattern, allow } => {
                assert_eq!(pattern, "/api/v1/users/{id}");
                assert_eq!(allow, "GET, HEAD, PATCH, DELETE");
            }
            _ => panic!("want 405"),
        }
        match r.at(Method::Other, "/api/v1/users") {
            Match::MethodNotAllowed { allow, .. } => assert_eq!(allow, "GET, HEAD, POST"),
            _ => panic!("want 405"),
        }
        assert!(matches!(r.at(Method::Get, "/missing"), Match::NotFound));
    }

    #[test]
    fn bad_tables_are_rejected() {
        let bad: [(&'static str, Method); 6] = [
            ("no-slash", Method::Get),
            ("/a//b", Method::Get),
            ("/a/{}", Method::Get),
            ("/a/x{y}", Method::Get),
            ("/{a}/{b}/{c}/{d}/{e}", Method::Get),
            ("/ok", Method::Other),
        ];
        for (p, m) in bad {
            assert!(Router::new().route(m, p, ()).is_err(), "{p}");
        }
        let dup = Router::new()
            .route(Method::Get, "/x", ())
            .and_then(|r| r.route(Method::Get, "/x", ()));
        assert!(dup.is_err());
        let renamed = Router::new()
            .route(Method::Get, "/u/{id}", ())
            .and_then(|r| r.route(Method::Put, "/u/{uid}", ()));
        assert!(renamed.is_err());
    }
}
