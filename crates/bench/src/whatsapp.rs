//! Bench mode `whatsapp`: signed WhatsApp Cloud API text-message webhooks, each with a unique
//! `wamid`, against the no-op hyper baseline and the bare durable journal in the same run.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Bytes;
use test_kit::mixed::sign;

use crate::load::{self, Target};

/// Text messages from 500 customers, unique wamids, signed as Meta signs them.
fn target(addr: SocketAddr, run: String) -> Target {
    Target {
        addr,
        path: "/hooks/wa".to_owned(),
        content_type: "application/json",
        body: Arc::new(move |c, n| {
            let customer = 5_511_900_000_000u64 + (c as u64 * 31 + n) % 500;
            Bytes::from(format!(
                r#"{{"object":"whatsapp_business_account","entry":[{{"id":"102290129340398","changes":[{{"value":{{"messaging_product":"whatsapp","metadata":{{"display_phone_number":"15550783881","phone_number_id":"106540352242922"}},"contacts":[{{"profile":{{"name":"Customer {customer}"}},"wa_id":"{customer}"}}],"messages":[{{"from":"{customer}","id":"wamid.{run}-c{c}-m{n}","timestamp":"1700000000","text":{{"body":"Hello, my order {n} has not arrived yet. Can you check where it is?"}},"type":"text"}}]}},"field":"messages"}}]}}]}}"#
            ))
        }),
        signer: Some(Arc::new(|body: &[u8]| ("x-hub-signature-256", sign(body)))),
    }
}

pub async fn bench(connections: usize, secs: Duration, rounds: usize) -> anyhow::Result<()> {
    load::compare("ingest-whatsapp", (connections, secs, rounds), target).await
}
