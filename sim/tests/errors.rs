//! Bad requests get the answers a real API server gives: a `Status` with the right code and
//! reason, never a panic or a hung connection.

mod common;

use std::time::Duration;

use serde_json::Value;

async fn call(
    client: &kube::Client,
    method: &str,
    path: &str,
    ct: &str,
    body: &str,
) -> Result<String, (u16, String)> {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", ct)
        .body(body.as_bytes().to_vec())
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(10), client.request_text(req))
        .await
        .expect("the server answers");
    answer.map_err(|e| match e {
        kube::Error::Api(s) => (s.code, s.reason),
        other => panic!("expected a Status, got {other:?}"),
    })
}

/// Method, path, content type, body, and the expected (code, reason).
type Case = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    (u16, &'static str),
);

#[tokio::test]
async fn bad_requests_get_kubernetes_status_errors() {
    let (sim, client) = common::start(1.0).await;
    let json = "application/json";
    let cm = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"ok"}}"#;
    let cases: Vec<Case> = vec![
        (
            "GET",
            "/apis/nope.example.com/v1/things",
            json,
            "",
            (404, "NotFound"),
        ),
        (
            "GET",
            "/api/v1/namespaces/default/configmaps/missing",
            json,
            "",
            (404, "NotFound"),
        ),
        (
            "GET",
            "/api/v1/configmaps/cluster-scoped-path",
            json,
            "",
            (404, "NotFound"),
        ),
        (
            "POST",
            "/api/v1/namespaces/default/configmaps/ok",
            json,
            cm,
            (405, "MethodNotAllowed"),
        ),
        (
            "POST",
            "/api/v1/namespaces/default/configmaps",
            json,
            "{not json",
            (400, "BadRequest"),
        ),
        (
            "POST",
            "/api/v1/namespaces/default/configmaps",
            json,
            r#"{"metadata":{"name":"Not_Valid"}}"#,
            (422, "Invalid"),
        ),
        (
            "POST",
            "/api/v1/namespaces/default/configmaps",
            json,
            r#"{"metadata":{"name":"x","namespace":"other"}}"#,
            (400, "BadRequest"),
        ),
        (
            "POST",
            "/api/v1/namespaces/default/configmaps",
            "application/vnd.kubernetes.protobuf",
            "k8s\0",
            (415, "UnsupportedMediaType"),
        ),
        (
            "PATCH",
            "/api/v1/namespaces/default/configmaps/ok",
            "text/plain",
            "{}",
            (415, "UnsupportedMediaType"),
        ),
        (
            "PATCH",
            "/api/v1/namespaces/default/configmaps/ok",
            "application/apply-patch+yaml",
            cm,
            (422, "Invalid"),
        ),
        (
            "GET",
            "/api/v1/namespaces/default/configmaps?labelSelector=a%20in%20b",
            json,
            "",
            (400, "BadRequest"),
        ),
        (
            "GET",
            "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=abc",
            json,
            "",
            (400, "BadRequest"),
        ),
        (
            "DELETE",
            "/api/v1/namespaces/default",
            json,
            "",
            (403, "Forbidden"),
        ),
        (
            "POST",
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            json,
            r#"{"metadata":{"name":"wrong"},"spec":{"group":"a.io","names":{"plural":"bs","kind":"B"},
             "scope":"Namespaced","versions":[{"name":"v1","served":true,"storage":true}]}}"#,
            (422, "Invalid"),
        ),
    ];
    call(
        &client,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        json,
        cm,
    )
    .await
    .unwrap();
    for (method, path, ct, body, expected) in cases {
        let got = call(&client, method, path, ct, body).await;
        let (code, reason) = got.expect_err(path);
        assert_eq!((code, reason.as_str()), expected, "{method} {path}");
    }

    // A watch from a resourceVersion older than the history answers with an ERROR 410 event.
    sim.compact();
    call(
        &client,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        json,
        r#"{"metadata":{"name":"later"}}"#,
    )
    .await
    .unwrap();
    sim.compact();
    let text = call(
        &client,
        "GET",
        "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=2",
        json,
        "",
    )
    .await
    .unwrap();
    let event: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(event["type"], "ERROR");
    assert_eq!(event["object"]["code"], 410);
    assert_eq!(event["object"]["reason"], "Expired");
}
