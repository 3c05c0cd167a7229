//! Building the mail deskgate sends: From name, subject, threading headers, signature, body.

use serde_json::json;

use super::{EmailPayload, Planner, Purpose, ReplyContext};
use crate::config::outbound::{FromNameMode, Language, MailboxConfig};
use crate::model::{AgentRef, AutomaticKind, AutomaticRequest, ReplyRequest};

/// An agent's full, first and last name, from whatever the caller gave.
pub fn agent_names(agent: &AgentRef) -> (String, String, String) {
    let joined = [agent.first_name.as_deref(), agent.last_name.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    let full = agent
        .name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .unwrap_or(joined);
    let mut words = full.split_whitespace();
    let first = agent
        .first_name
        .clone()
        .unwrap_or_else(|| words.next().unwrap_or_default().to_owned());
    let last = agent.last_name.clone().unwrap_or_else(|| {
        full.split_whitespace()
            .skip(1)
            .collect::<Vec<_>>()
            .join(" ")
    });
    (full.trim().to_owned(), first, last)
}

/// The From name: "Ana from Acme" in `language` (mode `agent_and_company`, for an agent's
/// mail), else the company's name alone.
fn from_name(
    planner: &Planner,
    (mailbox, language): (&MailboxConfig, Language),
    agent_full_name: Option<&str>,
) -> Result<String, String> {
    match (mailbox.from_name, agent_full_name) {
        (FromNameMode::AgentAndCompany, Some(agent)) if !agent.is_empty() => planner
            .templates
            .from_name(language, agent, &mailbox.company_name),
        _ => Ok(mailbox.company_name.clone()),
    }
}

/// `Re: subject` in `language`, without stacking prefixes.
fn reply_subject(
    planner: &Planner,
    language: Language,
    subject: Option<&str>,
) -> Result<String, String> {
    match subject.map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) if s.to_lowercase().starts_with("re:") => Ok(s.to_owned()),
        subject => planner.templates.reply_subject(language, subject),
    }
}

/// The subject with the ticket's tag (`[#1042] Re: Printer`), unless it has it already.
pub(super) fn tagged(planner: &Planner, context: &ReplyContext, subject: String) -> String {
    match context.ticket_number {
        Some(number) => {
            let tag = planner.ticket_tag(number);
            if subject.contains(&tag) {
                subject
            } else {
                format!("{tag} {subject}")
            }
        }
        None => subject,
    }
}

/// The References of a reply: the thread's, then the message answered, each once.
fn references(context: &ReplyContext) -> Vec<String> {
    let mut refs = context.references.clone();
    if let Some(id) = &context.last_message_id {
        if !refs.contains(id) {
            refs.push(id.clone());
        }
    }
    refs
}

fn mailbox_of<'a>(planner: &'a Planner, name: &str) -> Result<&'a MailboxConfig, String> {
    planner
        .mailboxes
        .get(name)
        .ok_or_else(|| format!("no mailbox {name:?} is configured"))
}

/// An agent's reply by mail, with the mailbox's signature.
pub fn agent_reply(
    planner: &Planner,
    mailbox_name: &str,
    context: &ReplyContext,
    request: &ReplyRequest,
    message_id: String,
) -> Result<EmailPayload, String> {
    let mailbox = mailbox_of(planner, mailbox_name)?;
    let language = planner.language(context, Some(mailbox));
    let to = context.customer_email.clone().ok_or_else(|| {
        format!(
            "conversation {} has no customer email address to reply to",
            context.conversation_id
        )
    })?;
    let (full, first, last) = agent_names(&request.agent);
    let tokens = json!({
        "agent_full_name": full, "agent_first_name": first, "agent_last_name": last,
        "company_name": mailbox.company_name,
    });
    let signature_text = planner
        .templates
        .render_file(&format!("signature/{mailbox_name}.txt"), &tokens)?;
    let signature_html = planner
        .templates
        .render_file(&format!("signature/{mailbox_name}.html"), &tokens)?;
    let mut text = request.text.clone();
    if let Some(signature) = signature_text {
        text = format!("{}\n\n-- \n{signature}", text.trim_end());
    }
    let html = request.html.as_ref().map(|html| match &signature_html {
        Some(signature) => format!("{html}\n<div class=\"signature\">{signature}</div>"),
        None => html.clone(),
    });
    Ok(EmailPayload {
        mailbox: mailbox_name.to_owned(),
        from_name: from_name(planner, (mailbox, language), Some(&full))?,
        from_address: mailbox.address.clone(),
        to,
        subject: tagged(
            planner,
            context,
            reply_subject(planner, language, context.subject.as_deref())?,
        ),
        text,
        html,
        message_id,
        in_reply_to: context.last_message_id.clone(),
        references: references(context),
        reply_to: None,
        auto_submitted: None,
        attachments: request.attachments.clone(),
    })
}

/// An automatic mail from a template, to `to`, sent for `purpose`.
pub fn automatic(
    planner: &Planner,
    mailbox_name: &str,
    context: &ReplyContext,
    (request, purpose): (&AutomaticRequest, Purpose),
    to: String,
    message_id: String,
) -> Result<EmailPayload, String> {
    let mailbox = mailbox_of(planner, mailbox_name)?;
    // Forwards and notifications to the desk's members are in the desk's language.
    let language = if purpose != Purpose::Forward && context.customer_email.as_ref() == Some(&to) {
        planner.language(context, Some(mailbox))
    } else {
        planner.desk_language(&context.channel, Some(mailbox))
    };
    let mut values = serde_json::Map::new();
    values.insert("company_name".into(), json!(mailbox.company_name));
    values.insert("customer_name".into(), json!(context.customer_name));
    values.insert("customer_address".into(), json!(context.customer_email));
    values.insert("subject".into(), json!(context.subject));
    values.insert("conversation_id".into(), json!(context.conversation_id));
    values.insert("mailbox_address".into(), json!(mailbox.address));
    let mut ticket = serde_json::Map::new();
    ticket.insert("id".into(), json!(context.ticket_id));
    if let Some(number) = context.ticket_number {
        ticket.insert("number".into(), json!(number));
        ticket.insert("tag".into(), json!(planner.ticket_tag(number)));
    }
    if let Some(serde_json::Value::Object(fields)) = request.fields.get("ticket") {
        ticket.extend(fields.clone());
    }
    for (key, value) in &request.fields {
        values.insert(key.clone(), value.clone());
    }
    values.insert("ticket".into(), serde_json::Value::Object(ticket));
    let rendered = planner
        .templates
        .render(&request.template, language, &values)?;
    let auto_submitted = match request.kind {
        AutomaticKind::Acknowledgement => "auto-replied",
        AutomaticKind::Notification => "auto-generated",
    };
    // An acknowledgement answers the customer; a notification to agents starts its own thread.
    // A forward names the customer's thread, and its replies go to the mailbox, whose channel
    // threads them into the ticket's conversation by this mail's Message-ID.
    let (in_reply_to, refs, reply_to) = match (purpose, request.kind) {
        (Purpose::Forward, _) => (None, references(context), Some(mailbox.address.clone())),
        (_, AutomaticKind::Acknowledgement) => {
            (context.last_message_id.clone(), references(context), None)
        }
        (_, AutomaticKind::Notification) => (None, Vec::new(), None),
    };
    let subject = match rendered.subject {
        Some(subject) => subject,
        None => reply_subject(planner, language, context.subject.as_deref())?,
    };
    Ok(EmailPayload {
        mailbox: mailbox_name.to_owned(),
        from_name: from_name(planner, (mailbox, language), None)?,
        from_address: mailbox.address.clone(),
        to,
        subject: tagged(planner, context, subject),
        text: rendered.text,
        html: rendered.html,
        message_id,
        in_reply_to,
        references: refs,
        reply_to,
        auto_submitted: Some(auto_submitted.to_owned()),
        attachments: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_names_split_and_join() {
        let agent = |name: Option<&str>, first: Option<&str>, last: Option<&str>| AgentRef {
            id: "a".into(),
            name: name.map(Into::into),
            first_name: first.map(Into::into),
            last_name: last.map(Into::into),
        };
        assert_eq!(
            agent_names(&agent(Some("Ana Maria Lopez"), None, None)),
            ("Ana Maria Lopez".into(), "Ana".into(), "Maria Lopez".into())
        );
        assert_eq!(
            agent_names(&agent(None, Some("Bo"), Some("Berg"))),
            ("Bo Berg".into(), "Bo".into(), "Berg".into())
        );
        let planner = Planner::disabled();
        let reply = |language, subject| reply_subject(&planner, language, subject).unwrap();
        assert_eq!(reply(Language::En, Some("Re: x")), "Re: x");
        assert_eq!(reply(Language::En, Some("x")), "Re: x");
        assert_eq!(reply(Language::En, None), "Re: your message");
        assert_eq!(reply(Language::Fr, Some("RE: x")), "RE: x");
        assert_eq!(reply(Language::Fr, None), "Re: votre message");
    }
}
