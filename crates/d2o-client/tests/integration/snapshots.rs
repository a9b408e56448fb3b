//! Every fixture at every version, in every response format, equals `expected/v<N>.parquet`.

use d2o_client::{ClientError, ResponseFormat};

use crate::support::*;

async fn check_all(format: Option<ResponseFormat>) {
    let server = Server::start().await;
    let client = match format {
        None => server.client(),
        Some(f) => server.client_for(f),
    };
    let mut checked = 0;
    for fx in fixtures() {
        for v in fx.versions() {
            let label = format!("{}@v{v} [{format:?}]", fx.name);
            let result = client.table(&fx.table()).version(v).load().await;
            let batches = match result {
                Ok(b) => b,
                Err(ClientError::Http { status: 400, .. })
                    if format == Some(ResponseFormat::Parquet)
                        && (fx.needs_delta_format() || fx.feature("timestampNtz").as_bool() == Some(true)) =>
                {
                    // A parquet-only request for a table the parquet format cannot carry.
                    continue;
                }
                Err(e) => panic!("{label}: {e}"),
            };
            let expected = fx.expected(&format!("v{v}.parquet"));
            let columns = expected.columns();
            let cols: Vec<&str> = columns.iter().map(String::as_str).collect();
            if !batches.is_empty() {
                let got: Vec<String> = column_names(&batches).iter().map(|c| c.to_lowercase()).collect();
                let want: Vec<String> = columns.iter().map(|c| c.to_lowercase()).collect();
                assert_eq!(got, want, "{label}: columns");
            }
            let (got, want) = rows_like(&batches, &expected, &cols);
            assert_same_rows(&label, &got, &want);
            checked += 1;
        }
    }
    assert!(checked > 20, "only {checked} snapshots checked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_version_of_every_fixture_auto_format() {
    check_all(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_version_of_every_fixture_delta_format() {
    check_all(Some(ResponseFormat::Delta)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_version_of_every_fixture_parquet_format() {
    check_all(Some(ResponseFormat::Parquet)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_version_projection_and_limit() {
    let server = Server::start().await;
    let client = server.client();
    let fx = fixture("cdf-table");
    let batches = client.table(&fx.table()).columns(["BIRTHDAY", "id"]).load().await.expect("loads");
    assert_eq!(column_names(&batches), vec!["birthday", "id"]);
    let expected = fx.expected("v3.parquet");
    let (got, want) = rows_like(&batches, &expected, &["birthday", "id"]);
    assert_same_rows("projection", &got, &want);

    let batches = client.table(&fx.table()).limit(4).load().await.expect("loads");
    assert_eq!(num_rows(&batches), 4);
    let batches = client.table(&fx.table()).limit(0).load().await.expect("loads");
    assert_eq!(num_rows(&batches), 0);

    let e = client.table(&fx.table()).columns(["nope"]).load().await.expect_err("unknown column");
    assert!(e.to_string().contains("unknown column 'nope'"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_vectors_and_column_mapping_are_applied() {
    let server = Server::start().await;
    let client = server.client();
    let dv = fixture("table-with-dv-small");
    let list = client.table(&dv.table()).list_files().await.expect("lists");
    assert!(list.files.iter().any(|f| f.deletion_vector.is_some()), "the fixture has a DV");
    assert_eq!(num_rows(&client.table(&dv.table()).load().await.expect("loads")), 8);
    assert_eq!(num_rows(&client.table(&dv.table()).version(0).load().await.expect("loads")), 10);

    let cm = fixture("table-with-columnmapping-mode-name");
    let md = client.table(&cm.table()).metadata().await.expect("metadata");
    assert!(md.schema.fields.iter().any(|f| f.physical_name != f.name), "physical names differ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamp_time_travel() {
    let server = Server::start().await;
    let client = server.client();
    let fx = fixture("cdf-table");
    // The commits' timestamps (from `commitInfo`): v1 at 1703265021675, v2 at 1703886093785,
    // v3 at 1704559499570.
    let at = |ts: &str| client.table(&fx.table()).timestamp(ts);
    let cols: Vec<String> = fx.expected("v1.parquet").columns();
    let cols: Vec<&str> = cols.iter().map(String::as_str).collect();
    for (ts, version) in [
        ("2023-12-29T21:41:33.785Z", "v2"), // a commit's own time reads that commit
        ("2023-12-25T00:00:00Z", "v1"),     // between two commits: the earlier one
        ("2024-01-06T16:44:59.570Z", "v3"), // the latest commit's time
    ] {
        let batches = at(ts).load().await.unwrap_or_else(|e| panic!("{ts}: {e}"));
        let (got, want) = rows_like(&batches, &fx.expected(&format!("{version}.parquet")), &cols);
        assert_same_rows(&format!("{ts} reads {version}"), &got, &want);
    }
    let (v1, v2) = (fx.expected("v1.parquet"), fx.expected("v2.parquet"));
    let (rows_v1, rows_v2) = rows_like(&v1.batches, &v2, &cols);
    assert_ne!(rows_v1, rows_v2, "the fixture's versions differ, so the cases above tell them apart");
    // After the last commit there is no version yet: the protocol's 400, not the latest.
    let after = at("2100-01-01T00:00:00Z").load().await.expect_err("after the last commit");
    assert_eq!(after.status(), Some(400), "{after}");
    assert!(after.to_string().contains("after the latest version"), "{after}");
    let before = at("2000-01-01T00:00:00Z").load().await.expect_err("before the first commit");
    assert_eq!(before.status(), Some(400), "{before}");
    let v = client.table(&fx.table()).table_version().await.expect("version");
    assert_eq!(v, 3);
}
