use proptest::prelude::*;

use super::*;

fn text(identity: &Identity) -> String {
    match identity {
        Identity::Email { address } => address.clone(),
        Identity::Phone { number } => number.clone(),
        Identity::Channel { id, .. } => id.clone(),
    }
}

#[test]
fn emails_are_trimmed_lower_cased_and_idn_domains_become_ascii() {
    let table = [
        ("  Ana@Example.COM ", "ana@example.com"),
        ("José@Bücher.example", "josé@xn--bcher-kva.example"),
        (
            "ana@EXAMPLE.xn--bcher-kva.example",
            "ana@example.xn--bcher-kva.example",
        ),
        ("a.b+tag@sub.example.org", "a.b+tag@sub.example.org"),
    ];
    for (raw, expected) in table {
        assert_eq!(
            email(raw),
            Some(Identity::Email {
                address: expected.into()
            }),
            "{raw:?}"
        );
    }
    for bad in [
        "",
        "ana",
        "@example.com",
        "ana@",
        "ana@localhost",
        "a b@example.com",
        "ana@example.",
        "ana@exa mple.com",
        "<ana@example.com>",
        "ana@@example.com",
        "ana@exa_mple.com",
    ] {
        assert_eq!(email(bad), None, "{bad:?}");
    }
}

#[test]
fn phones_become_e164_with_the_default_region_for_national_numbers() {
    let gb = parse_region("gb").unwrap();
    let us = parse_region("US").unwrap();
    let table = [
        ("+1 (415) 555-0100", None, Some("+14155550100")),
        ("+44 20 7946 0958", None, Some("+442079460958")),
        ("020 7946 0958", Some(gb), Some("+442079460958")),
        ("(415) 555-0100", Some(us), Some("+14155550100")),
        ("020 7946 0958", None, None),
        ("call me", Some(gb), None),
        ("123", Some(gb), None),
    ];
    for (raw, region, expected) in table {
        let expected = expected.map(|n| Identity::Phone { number: n.into() });
        assert_eq!(
            phone(raw, Region(region)),
            expected,
            "{raw:?} in {region:?}"
        );
    }
    assert!(parse_region("ZZ").is_err());
}

#[test]
fn a_whatsapp_id_is_the_same_phone_identity() {
    assert_eq!(
        whatsapp_id("14155550100"),
        phone("+1 415 555 0100", Region::default())
    );
    assert!(whatsapp_id("14155550100").is_some());
    assert_eq!(whatsapp_id("not-a-number"), None);
    assert_eq!(whatsapp_id(""), None);
}

#[test]
fn one_per_person_scopes() {
    assert_eq!(
        one_per_person_scope(&external("api", "cust-1")),
        Some("api".into())
    );
    assert_eq!(
        one_per_person_scope(&messenger("fb", "page1", "123")),
        Some("fb:psid:page1".into())
    );
    assert_ne!(
        one_per_person_scope(&messenger("fb", "page1", "1")),
        one_per_person_scope(&messenger("fb", "page2", "1"))
    );
    assert_eq!(
        one_per_person_scope(&whatsapp_user("wa", "waba1", "US.1")),
        Some("wa:whatsapp_user:waba1".into())
    );
    assert_ne!(
        one_per_person_scope(&whatsapp_user("wa", "waba1", "US.1")),
        one_per_person_scope(&whatsapp_user("wa", "waba2", "US.1"))
    );
    assert_eq!(one_per_person_scope(&chat_visitor("chat", "tok")), None);
    assert_eq!(one_per_person_scope(&email("a@b.example").unwrap()), None);
}

#[test]
fn replies_address_the_id_the_platform_knows() {
    assert_eq!(
        platform_user_id(&messenger("fb", "104857600", "2411")),
        Some("2411")
    );
    assert_eq!(
        platform_user_id(&chat_visitor("chat", "tok:9")),
        Some("tok:9")
    );
    assert_eq!(platform_user_id(&external("api", "crm-7")), Some("crm-7"));
    let user = whatsapp_user("wa", "waba1", "BR.1502576394655843");
    assert_eq!(platform_user_id(&user), Some("BR.1502576394655843"));
    assert_eq!(whatsapp_user_id(&user), Some("BR.1502576394655843"));
    assert_eq!(whatsapp_user_id(&messenger("fb", "p", "1")), None);
    assert_eq!(platform_user_id(&email("a@b.example").unwrap()), None);
}

#[test]
fn spellings_keep_what_differs_from_the_normalised_address() {
    let found = spellings([" Ana.Lima@Example.COM ", "bo@example.com", "not an address"]);
    assert_eq!(
        found.into_iter().collect::<Vec<_>>(),
        [(
            "ana.lima@example.com".to_owned(),
            "Ana.Lima@Example.COM".to_owned()
        )]
    );
    assert!(spellings(None).is_empty());
}

proptest! {
    #[test]
    fn normalising_an_email_twice_equals_once(
        local in "[A-Za-z0-9.+_-]{1,20}",
        domain in "[A-Za-z0-9ü-]{1,12}\\.[A-Za-z]{2,6}",
        pad in " {0,3}",
    ) {
        let raw = format!("{pad}{local}@{domain}{pad}");
        if let Some(once) = email(&raw) {
            prop_assert_eq!(email(&text(&once)), Some(once));
        }
    }

    #[test]
    fn normalising_a_phone_twice_equals_once(
        digits in "[0-9 ()-]{4,18}",
        plus in any::<bool>(),
    ) {
        let raw = if plus { format!("+{digits}") } else { digits };
        let gb = parse_region("GB").unwrap();
        if let Some(once) = phone(&raw, Region(Some(gb))) {
            prop_assert_eq!(phone(&text(&once), Region(Some(gb))), Some(once.clone()));
            prop_assert_eq!(phone(&text(&once), Region::default()), Some(once));
        }
    }

    #[test]
    fn arbitrary_input_never_panics(raw in "\\PC{0,40}") {
        let _ = email(&raw);
        let _ = phone(&raw, Region::default());
        let _ = whatsapp_id(&raw);
    }
}
