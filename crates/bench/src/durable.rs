//! The second ingest baseline: a bare durable journal server. hyper, the channel's own parsing
//! (the API channel's, or WhatsApp's signature check and payload), and one group-committed
//! file append + `fdatasync` before the 2xx; no dedupe, no database, no processor. deskgate
//! divided by this is the price of everything it does beyond keeping the promise.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use deskgate::channels::{api, meta, ChannelError, HookRequest};
use deskgate::config::ChannelKind;
use deskgate::model::Record;
use deskgate::store::Blobs;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

/// Records waiting for the writer; a full queue makes requests wait, as deskgate's does.
const QUEUE: usize = 4096;
/// The most records one append + fdatasync carries.
const MAX_BATCH: usize = 1024;

/// A record on its way to the file, and who waits for it to be durable.
type Pending = (Vec<u8>, oneshot::Sender<Result<(), String>>);

pub async fn serve(port: u16, dir: PathBuf) -> anyhow::Result<()> {
    std::fs::create_dir_all(&dir)?;
    let blobs = Arc::new(Blobs::open(&dir)?);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("journal.log"))?;
    let (queue, records) = mpsc::channel::<Pending>(QUEUE);
    std::thread::spawn(move || write_batches(file, records));
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let (builder, blobs, queue) = (builder.clone(), blobs.clone(), queue.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let (blobs, queue) = (blobs.clone(), queue.clone());
                async move { Ok::<_, hyper::Error>(handle(request, &blobs, &queue).await) }
            });
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(
    request: hyper::Request<hyper::body::Incoming>,
    blobs: &Blobs,
    queue: &mpsc::Sender<Pending>,
) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(body) => body.to_bytes(),
        Err(error) => return answer(400, format!("reading the body: {error}")),
    };
    let length = body.len();
    let hook = HookRequest {
        channel_id: parts.uri.path().trim_start_matches("/hooks/"),
        headers: &parts.headers,
        body,
        received_at: chrono::Utc::now(),
        blobs,
        region: Default::default(),
    };
    let records = match parse(&hook) {
        Ok(records) => records,
        Err(error) => return answer(400, error.to_string()),
    };
    let (done, durable) = oneshot::channel();
    if queue.send((records, done)).await.is_err() {
        return answer(503, "the writer stopped".to_owned());
    }
    match durable.await {
        Ok(Ok(())) => answer(
            202,
            format!(r#"{{"status":"accepted","duplicate":false,"bytes":{length}}}"#),
        ),
        Ok(Err(error)) => answer(503, error),
        Err(_) => answer(503, "the writer stopped".to_owned()),
    }
}

/// The channel's parsing, by path: `/hooks/api` (the API channel) or `/hooks/wa` (WhatsApp,
/// signed with the bench's app secret). Returns the records serialised as the journal's.
fn parse(hook: &HookRequest<'_>) -> Result<Vec<u8>, ChannelError> {
    let records = match hook.channel_id {
        "api" => vec![Record::Inbound(Box::new(api::parse(hook)?))],
        "wa" => {
            meta::signature::verify(
                hook.headers,
                meta::signature::META_HEADER,
                test_kit::mixed::APP_SECRET.as_bytes(),
                &hook.body,
            )?;
            let payload = meta::parse_json(&hook.body)?;
            meta::records(ChannelKind::Whatsapp, hook, &payload)
        }
        other => return Err(ChannelError::Invalid(format!("no channel {other}"))),
    };
    serde_json::to_vec(&records).map_err(|e| ChannelError::Invalid(e.to_string()))
}

/// `body` as is for a 2xx, else wrapped as `{"error": body}`.
fn answer(status: u16, body: String) -> hyper::Response<Full<Bytes>> {
    let body = if status < 300 {
        body
    } else {
        serde_json::json!({ "error": body }).to_string()
    };
    hyper::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("a status and a fixed header are a valid response")
}

/// The one writer: takes every record waiting (up to [`MAX_BATCH`]), appends them with one
/// write, makes them durable with one `fdatasync`, then answers them all.
fn write_batches(mut file: File, mut records: mpsc::Receiver<Pending>) {
    let mut buffer = Vec::new();
    while let Some(first) = records.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match records.try_recv() {
                Ok(pending) => batch.push(pending),
                Err(_) => break,
            }
        }
        buffer.clear();
        for (record, _) in &batch {
            buffer.extend_from_slice(&(record.len() as u32).to_le_bytes());
            buffer.extend_from_slice(record);
        }
        let result = file
            .write_all(&buffer)
            .and_then(|()| file.sync_data())
            .map_err(|e| format!("appending to the journal file: {e}"));
        for (_, done) in batch {
            let _ = done.send(result.clone());
        }
    }
}

/// The directory a durable server child writes into, beside deskgate's state of the round.
pub fn dir(state: &Path, round: usize) -> PathBuf {
    state.join(format!("durable-{round}"))
}
