//! The console's changes in-process: create, edit and grow through the preview (the impact, the
//! refusals with their rules, field errors at the field), group slots fixed, YAML export and
//! import, the re-salt's dry run and confirmation, conflicts that show what changed meanwhile,
//! the audit log's filters and diffs, and the keys page (admin only, create, revoke ending the
//! key's sessions, last use).

use crate::console::{attr_after, enc, key, location, Browser};
use crate::support::{configured, CONFIG};
use axum::http::StatusCode;

fn form(csrf: &str, version: u64, fields: &[(&str, &str)]) -> String {
    let mut f = format!("csrf={csrf}&version={version}");
    for (k, v) in fields {
        f.push_str(&format!("&{k}={}", enc(v)));
    }
    f
}

#[tokio::test]
async fn an_experiment_is_created_grown_and_edited_through_the_preview() {
    let s = configured().await;
    let (_, editor) = key(&s, "eddie", "editor").await;
    let mut b = Browser::new(&s);
    b.sign_in(&editor).await;
    let csrf = b.csrf("/console/new/experiments").await;
    let v = s.app.live().version;
    let yaml = "unit: user\nsurfaces: [home]\nshare: 10%\nvariants: {a: 1, b: 1}\n";

    // Create: the preview names the change and writes nothing; the confirmation makes it.
    let p = b.post("/console/new/experiments", &form(&csrf, v, &[("id", "fresh"), ("yaml", yaml)])).await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.text);
    assert!(p.text.contains("experiment fresh"), "{}", p.text);
    assert!(p.text.contains("action=\"/console/new/experiments/confirm\""), "{}", p.text);
    assert!(p.text.contains("name=\"id\" value=\"fresh\""));
    assert_eq!(s.app.live().version, v, "a preview writes nothing");
    let r = b.post("/console/new/experiments/confirm", &form(&csrf, v, &[("id", "fresh"), ("yaml", yaml)])).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    assert_eq!(location(&r), format!("/console/experiments/fresh?done={}", v + 1));
    assert_eq!(s.app.live().config["experiments"]["fresh"]["share"], "10%");
    let v = v + 1;

    // The same name again: the error is at the name.
    let again = b.post("/console/new/experiments", &form(&csrf, v, &[("id", "fresh"), ("yaml", yaml)])).await;
    assert_eq!(again.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", again.text);
    assert!(again.text.contains("id=\"id-errors\""), "{}", again.text);
    assert!(again.text.contains("already exists"), "{}", again.text);
    // A share over 100%: the core's error, at the YAML, with its path inside the entity.
    let bad = "unit: user\nsurfaces: [home]\nshare: 150%\nvariants: {a: 1}\n";
    let r = b.post("/console/new/experiments", &form(&csrf, v, &[("id", "other"), ("yaml", bad)])).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(r.text.contains("id=\"yaml-errors\""), "{}", r.text);
    assert!(r.text.contains("data-path=\"share\""), "{}", r.text);
    assert!(r.text.contains("aria-invalid=\"true\""));
    assert!(r.text.contains("150%"), "the form keeps what was typed");
    assert_eq!(s.app.live().version, v);

    // Grow a running experiment: its buckets before and after, no unit moves.
    let p = b.post("/console/experiments/banner/grow", &form(&csrf, v, &[("share", "60%")])).await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.text);
    assert!(p.text.contains("id=\"impact\""), "{}", p.text);
    assert!(!p.text.contains("id=\"refusals\""), "{}", p.text);
    let r = b.post("/console/experiments/banner/grow/confirm", &form(&csrf, v, &[("share", "60%")])).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    assert_eq!(s.app.live().config["experiments"]["banner"]["share"], "60%");
    let v = v + 1;

    // Shrinking would move units: refused with its rule, and confirming does not write.
    let p = b.post("/console/experiments/banner/grow", &form(&csrf, v, &[("share", "40%")])).await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.text);
    assert!(p.text.contains("id=\"refusals\""), "{}", p.text);
    let r = b.post("/console/experiments/banner/grow/confirm", &form(&csrf, v, &[("share", "40%")])).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert_eq!(s.app.live().version, v);

    // Edit as YAML: the entity's YAML; a reweight of a running experiment would move units.
    let page = b.get("/console/edit/experiments/banner?as=yaml").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.text.contains("share: &#34;60%&#34;"), "{}", page.text);
    let edited = "unit: user\nsurfaces: [home]\nshare: 60%\nvariants:\n  control: {weight: 3, value: false}\n  treatment: {weight: 1, value: true}\ninclude: {alice: treatment}\nstate: running\n";
    let p = b.post("/console/edit/experiments/banner", &form(&csrf, v, &[("yaml", edited)])).await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.text);
    assert!(p.text.contains("id=\"impact\""), "{}", p.text);
    assert!(p.text.contains("id=\"refusals\""), "a reweight of a running experiment is refused: {}", p.text);
    // Forced with a reason: made, marked in the history.
    let r = b
        .post(
            "/console/edit/experiments/banner/confirm",
            &form(&csrf, v, &[("yaml", edited), ("force", "on"), ("reason", "ramp control")]),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let page = b.get("/console/experiments/banner").await;
    assert!(page.text.contains("<strong>forced</strong>: <bdi>ramp control</bdi>"), "{}", page.text);
}

/// The inputs a browser would post for the form `#entity-form` of `html` as it stands (text
/// inputs, hidden inputs, checked boxes, selected options, text areas), unescaped.
fn submitted(html: &str) -> Vec<(String, String)> {
    submitted_form(html, "entity-form")
}

/// [`submitted`] for the form with id `form_id`.
fn submitted_form(html: &str, form_id: &str) -> Vec<(String, String)> {
    fn unescape(s: &str) -> String {
        let mut out = String::new();
        let mut rest = s;
        while let Some(i) = rest.find('&') {
            out.push_str(&rest[..i]);
            rest = &rest[i..];
            let end = rest.find(';').unwrap();
            let entity = &rest[1..end];
            let c = match entity {
                "amp" => '&',
                "lt" => '<',
                "gt" => '>',
                "quot" => '"',
                _ => char::from_u32(entity.strip_prefix('#').unwrap().parse().unwrap()).unwrap(),
            };
            out.push(c);
            rest = &rest[end + 1..];
        }
        out + rest
    }
    fn attr(tag: &str, name: &str) -> Option<String> {
        let at = tag.find(&format!(" {name}=\""))? + name.len() + 3;
        Some(unescape(&tag[at..at + tag[at..].find('"')?]))
    }
    let start = html.find(&format!("id=\"{form_id}\"")).expect("the page has the form");
    let form = &html[start..start + html[start..].find("</form>").unwrap()];
    let mut out = vec![];
    let mut rest = form;
    while let Some(i) = rest.find('<') {
        rest = &rest[i..];
        let end = rest.find('>').unwrap();
        let tag = &rest[..=end];
        if tag.starts_with("<input ") {
            let kind = attr(tag, "type").unwrap_or_default();
            if kind != "checkbox" || tag.contains(" checked") {
                out.push((attr(tag, "name").unwrap(), attr(tag, "value").unwrap_or_default()));
            }
        } else if tag.starts_with("<select ") {
            let close = rest.find("</select>").unwrap();
            let body = &rest[..close];
            let chosen = body
                .split("<option ")
                .skip(1)
                .find(|o| o.contains(" selected"))
                .or_else(|| body.split("<option ").nth(1));
            let value = chosen.and_then(|o| attr(&format!(" {o}"), "value")).unwrap_or_default();
            out.push((attr(tag, "name").unwrap(), value));
        } else if tag.starts_with("<textarea ") {
            let close = rest.find("</textarea>").unwrap();
            out.push((attr(tag, "name").unwrap(), unescape(&rest[end + 1..close])));
        }
        rest = &rest[1..];
    }
    out
}

fn encode(pairs: &[(String, String)]) -> String {
    pairs.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&")
}

fn with(mut pairs: Vec<(String, String)>, changes: &[(&str, &str)]) -> Vec<(String, String)> {
    for (k, v) in changes {
        match pairs.iter_mut().find(|(n, _)| n == k) {
            Some(p) => p.1 = v.to_string(),
            None => pairs.push((k.to_string(), v.to_string())),
        }
    }
    pairs
}

#[tokio::test]
async fn entities_are_created_and_edited_field_by_field_with_errors_at_their_inputs() {
    let s = configured().await;
    let (_, editor) = key(&s, "eddie", "editor").await;
    let mut b = Browser::new(&s);
    b.sign_in(&editor).await;

    // The new experiment's form: one input per field, started from the configuration.
    let page = b.get("/console/new/experiments").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    for input in [
        "name=\"mode\" value=\"fields\"",
        "name=\"variants[0].name\"",
        "name=\"criteria[0].attribute\"",
        "name=\"share\"",
        "name=\"include\"",
    ] {
        assert!(page.text.contains(input), "{input}: {}", page.text);
    }
    assert!(page.text.contains("href=\"/console/new/experiments?as=yaml\""), "the YAML editor is one link away");
    let v = s.app.live().version;
    let filled = with(
        submitted(&page.text),
        &[
            ("id", "fresh"),
            ("share", "5%"),
            ("variants[0].name", "a"),
            ("variants[1].name", "b"),
            ("variants[1].value", "{color: blue}"),
            ("criteria[0].attribute", "country"),
            ("criteria[0].value", "SE, NO"),
            ("owner", "<script>x</script>"),
        ],
    );
    let p = b.post("/console/new/experiments", &encode(&filled)).await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.text);
    assert!(p.text.contains("name=\"mode\" value=\"fields\""), "the confirmation remembers the form: {}", p.text);
    assert_eq!(s.app.live().version, v, "a preview writes nothing");
    let r = b.post("/console/new/experiments/confirm", &encode(&submitted_form(&p.text, "confirm"))).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let e = &s.app.live().config["experiments"]["fresh"];
    assert_eq!(e["share"], "5%");
    assert_eq!(e["variants"]["b"], serde_json::json!({"weight": 1, "value": {"color": "blue"}}));
    assert_eq!(e["targeting"], serde_json::json!({"attribute": "country", "in": ["SE", "NO"]}));
    assert_eq!(e["owner"], "<script>x</script>");
    let v = v + 1;

    // Errors at their inputs: the validator's (a share over 100%, a weight that is no number)
    // and the form's own (a value that is not YAML), with what was typed kept.
    let bad = with(filled.clone(), &[("id", "other"), ("share", "150%"), ("version", &v.to_string())]);
    let r = b.post("/console/new/experiments", &encode(&bad)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(r.text.contains("id=\"f-share-errors\""), "{}", r.text);
    assert!(r.text.contains("value=\"150%\" aria-invalid=\"true\""), "{}", r.text);
    let bad = with(filled.clone(), &[("id", "other"), ("variants[1].weight", "abc"), ("version", &v.to_string())]);
    let r = b.post("/console/new/experiments", &encode(&bad)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(r.text.contains("id=\"f-variants-1--weight-errors\""), "{}", r.text);
    let bad = with(filled.clone(), &[("id", "other"), ("variants[1].value", "{unclosed"), ("version", &v.to_string())]);
    let r = b.post("/console/new/experiments", &encode(&bad)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(r.text.contains("id=\"f-variants-1--value-errors\""), "{}", r.text);
    assert!(r.text.contains("value=\"{unclosed\""), "{}", r.text);
    let r = b.post("/console/new/experiments", &encode(&with(filled.clone(), &[("version", &v.to_string())]))).await;
    assert!(r.text.contains("id=\"id-errors\""), "the same name again is an error at the name: {}", r.text);
    assert_eq!(s.app.live().version, v);

    // A running experiment's form: its unit type is read-only and says why; submitting the page
    // as it stands changes nothing at all, and a description is only text.
    let page = b.get("/console/edit/experiments/banner").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.text.contains("id=\"f-unit\" name=\"unit\" type=\"text\" value=\"user\" readonly"), "{}", page.text);
    assert!(page.text.contains("while it runs (rules moves-units"), "{}", page.text);
    let as_is = submitted(&page.text);
    let p = b.post("/console/edit/experiments/banner", &encode(&as_is)).await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.text);
    assert!(p.text.contains("None: the configuration would stay as it is."), "{}", p.text);
    let p = b
        .post("/console/edit/experiments/banner", &encode(&with(as_is.clone(), &[("description", "the banner")])))
        .await;
    assert!(!p.text.contains("id=\"refusals\""), "{}", p.text);
    // A narrower targeting through the form is refused with its rule, like through the API.
    let p = b
        .post(
            "/console/edit/experiments/banner",
            &encode(&with(as_is, &[("criteria[0].attribute", "country"), ("criteria[0].value", "SE")])),
        )
        .await;
    assert!(p.text.contains("<code>moves-units</code>"), "{}", p.text);

    // Every collection's form, new and edit, renders its inputs.
    for (url, input) in [
        ("/console/new/segments", "name=\"criteria[0].op\""),
        ("/console/new/groups", "name=\"slots\""),
        ("/console/new/holdouts", "name=\"applies_to\""),
        ("/console/new/units", "name=\"attribute\""),
        ("/console/edit/holdouts/hold", "readonly"),
        ("/console/edit/units/user", "readonly"),
        ("/console/edit/experiments/later", "name=\"variants[0].name\" type=\"text\" value=\"a\""),
    ] {
        let page = b.get(url).await;
        assert_eq!(page.status, StatusCode::OK, "{url}: {}", page.text);
        assert!(page.text.contains(input), "{url}: {input}: {}", page.text);
        assert!(page.text.contains("name=\"mode\" value=\"fields\""), "{url}");
    }
    // A segment made of rows, then an experiment whose entry the form cannot show is edited as
    // YAML, and the page says why.
    let page = b.get("/console/new/segments").await;
    let seg = with(
        submitted(&page.text),
        &[("id", "nordics"), ("criteria[0].attribute", "country"), ("criteria[0].value", "SE, NO")],
    );
    let p = b.post("/console/new/segments", &encode(&seg)).await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.text);
    assert!(p.text.contains("attribute: country"), "{}", p.text);
    let csrf = attr_after(&page.text, "name=\"csrf\" value=\"").unwrap();
    let ranged =
        "unit: user\nsurfaces: [search]\nshare: 1%\nvariants:\n  a: {ranges: [[0, 50]]}\n  b: {ranges: [[50, 100]]}\n";
    let r = b.post("/console/new/experiments/confirm", &form(&csrf, v, &[("id", "ranged"), ("yaml", ranged)])).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let page = b.get("/console/edit/experiments/ranged").await;
    assert!(page.text.contains("id=\"why-yaml\""), "{}", page.text);
    assert!(page.text.contains("explicit split ranges"), "{}", page.text);
    assert!(page.text.contains("id=\"yaml\""), "{}", page.text);
}

#[tokio::test]
async fn a_group_form_says_its_slots_are_fixed_and_change_control_keeps_them() {
    let s = configured().await;
    let mut b = Browser::new(&s);
    b.sign_in(crate::support::ADMIN).await;
    let page = b.get("/console/new/groups").await;
    assert!(page.text.contains("slots are fixed once it is created"), "{}", page.text);
    let csrf = attr_after(&page.text, "name=\"csrf\" value=\"").unwrap();
    let v = s.app.live().version;
    let yaml = "unit: user\nshare: 20%\nslots: [50%, 50%]\n";
    let r = b.post("/console/new/groups/confirm", &form(&csrf, v, &[("id", "g"), ("yaml", yaml)])).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    assert_eq!(location(&r), format!("/console/config?done={}", v + 1));
    let p = b
        .post("/console/edit/groups/g", &form(&csrf, v + 1, &[("yaml", "unit: user\nshare: 20%\nslots: [30%, 70%]\n")]))
        .await;
    assert!(p.text.contains("<code>slots-fixed</code>"), "{}", p.text);
}

#[tokio::test]
async fn the_configuration_is_exported_and_imported_as_yaml() {
    let s = configured().await;
    let mut b = Browser::new(&s);
    b.sign_in(crate::support::ADMIN).await;
    let r = b.get("/console/export.yaml").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.headers["content-disposition"].to_str().unwrap().contains("attachment"));
    assert!(r.text.contains("banner:"), "{}", r.text);
    let csrf = b.csrf("/console/import").await;
    let v = s.app.live().version;
    let yaml = CONFIG.replace("share: 10%\n    variants: {a: 1}", "share: 20%\n    variants: {a: 1}");
    assert_ne!(yaml, CONFIG);
    let p = b.post("/console/import", &form(&csrf, v, &[("yaml", &yaml)])).await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.text);
    assert!(p.text.contains("experiment later"), "{}", p.text);
    assert_eq!(s.app.live().version, v);
    let r = b.post("/console/import/confirm", &form(&csrf, v, &[("yaml", &yaml)])).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    assert_eq!(s.app.live().config["experiments"]["later"]["share"], "20%");
    // Not YAML: the error at the field.
    let r = b.post("/console/import", &form(&csrf, v + 1, &[("yaml", "units: [")])).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(r.text.contains("id=\"yaml-errors\""), "{}", r.text);
}

#[tokio::test]
async fn a_resalt_is_previewed_then_made_and_a_conflict_shows_what_changed() {
    let s = configured().await;
    let (_, editor) = key(&s, "eddie", "editor").await;
    let mut b = Browser::new(&s);
    b.sign_in(&editor).await;
    let csrf = b.csrf("/console/resalt").await;
    let v = s.app.live().version;
    let p = b.post("/console/resalt", &form(&csrf, v, &[("unit", "user"), ("reason", "quarterly")])).await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.text);
    assert!(p.text.contains("re-randomised"), "{}", p.text);
    assert!(p.text.contains("action=\"/console/resalt/confirm\""));
    assert_eq!(s.app.live().version, v, "a dry run writes nothing");
    let r = b.post("/console/resalt/confirm", &form(&csrf, v, &[("unit", "user"), ("reason", "quarterly")])).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    assert_eq!(location(&r), format!("/console/audit/{}", v + 1));
    let entry = b.get(location(&r)).await;
    assert!(entry.text.contains("<code>resalt</code>"), "{}", entry.text);
    assert!(entry.text.contains("quarterly"));
    // A stale confirmation: a conflict that lists what changed meanwhile.
    let r = b.post("/console/resalt/confirm", &form(&csrf, v, &[("unit", "user")])).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert!(r.text.contains("id=\"since\""), "{}", r.text);
    // The same for a grow previewed before someone else's change.
    let p = b.post("/console/experiments/banner/grow", &form(&csrf, v + 1, &[("share", "55%")])).await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.text);
    let api =
        s.call("POST", "/api/v1/experiments/color/stop", Some(crate::support::ADMIN), &[("if-match", "*")], "").await;
    assert_eq!(api.status, StatusCode::OK, "{}", api.text);
    let r = b.post("/console/experiments/banner/grow/confirm", &form(&csrf, v + 1, &[("share", "55%")])).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert!(r.text.contains("Someone else changed the configuration first"), "{}", r.text);
    assert!(r.text.contains("id=\"since\"") && r.text.contains("experiment color"), "{}", r.text);
    assert_eq!(s.app.live().config["experiments"]["banner"]["share"], "50%", "nothing written");
}

#[tokio::test]
async fn the_audit_log_filters_by_entity_actor_and_date_and_shows_each_diff() {
    let s = configured().await;
    let (_, editor) = key(&s, "eddie", "editor").await;
    let mut b = Browser::new(&s);
    b.sign_in(&editor).await;
    let csrf = b.csrf("/console/experiments/banner").await;
    let v = s.app.live().version;
    let r = b.post("/console/experiments/banner/grow/confirm", &form(&csrf, v, &[("share", "60%")])).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let all = b.get("/console/audit").await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.text);
    assert!(all.text.contains(&format!("data-version=\"{}\"", v + 1)), "{}", all.text);
    assert!(all.text.contains(&format!("data-version=\"{v}\"")), "{}", all.text);
    let by_actor = b.get("/console/audit?actor=eddie").await;
    assert!(by_actor.text.contains(&format!("data-version=\"{}\"", v + 1)));
    assert!(!by_actor.text.contains(&format!("data-version=\"{v}\"")), "{}", by_actor.text);
    let by_entity = b.get("/console/audit?entity=color").await;
    assert!(by_entity.text.contains(&format!("data-version=\"{v}\"")), "{}", by_entity.text);
    assert!(!by_entity.text.contains(&format!("data-version=\"{}\"", v + 1)), "{}", by_entity.text);
    let today = allot_server::now()[..10].to_string();
    let by_day = b.get(&format!("/console/audit?from={today}&to={today}")).await;
    assert!(by_day.text.contains(&format!("data-version=\"{}\"", v + 1)));
    let long_ago = b.get("/console/audit?from=2000-01-01&to=2000-01-02").await;
    assert!(long_ago.text.contains("id=\"no-entries\""), "{}", long_ago.text);
    let bad = b.get("/console/audit?from=yesterday").await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.text.contains("from: a day is written YYYY-MM-DD"));
    // One entry: who, what, and the diff of the configuration, with links to both versions.
    let e = b.get(&format!("/console/audit/{}", v + 1)).await;
    assert_eq!(e.status, StatusCode::OK, "{}", e.text);
    assert!(e.text.contains("<tr class=\"del\">") && e.text.contains("share: &#34;50%&#34;"), "{}", e.text);
    assert!(e.text.contains("<tr class=\"ins\">") && e.text.contains("share: &#34;60%&#34;"), "{}", e.text);
    assert!(e.text.contains(&format!("href=\"/console/versions/{v}\"")));
    let page = b.get(&format!("/console/versions/{v}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("share: &#34;50%&#34;"), "{}", page.text);
    assert_eq!(b.get("/console/audit/999").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn keys_are_managed_by_admins_and_revoking_one_ends_its_sessions() {
    let s = configured().await;
    let (_, editor) = key(&s, "eddie", "editor").await;
    let mut e = Browser::new(&s);
    e.sign_in(&editor).await;
    let r = e.get("/console/keys").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "an editor cannot manage keys");
    assert!(!e.get("/console").await.text.contains("href=\"/console/keys\""));
    let mut a = Browser::new(&s);
    a.sign_in(crate::support::ADMIN).await;
    let page = a.get("/console/keys").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.text.contains("eddie"));
    let csrf = attr_after(&page.text, "name=\"csrf\" value=\"").unwrap();
    // A bad name: said at the field.
    let r = a.post("/console/keys", &format!("csrf={csrf}&name=&role=reader")).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(r.text.contains("name: a name of 1 to 100 characters"), "{}", r.text);
    let r = a.post("/console/keys", &format!("csrf={csrf}&name=pat&role=reader")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let secret = r.text.split("<code id=\"secret\">").nth(1).unwrap().split('<').next().unwrap().to_string();
    assert!(secret.starts_with("allot_"), "{secret}");
    let mut pat = Browser::new(&s);
    let signed = pat.sign_in(&secret).await;
    assert_eq!(signed.status, StatusCode::SEE_OTHER);
    assert_eq!(pat.get("/console").await.status, StatusCode::OK);
    // Its last use shows; revoking it ends its session.
    let keys = s.app.store().list_keys().await.unwrap();
    let id = keys.iter().find(|k| k.name == "pat").unwrap().id.clone();
    let page = a.get("/console/keys").await;
    let row = page.text.split(&format!("data-key=\"{id}\"")).nth(1).unwrap().split("</tr>").next().unwrap().to_string();
    assert!(row.contains(&allot_server::now()[..10]), "last use today: {row}");
    let r = a.post(&format!("/console/keys/{id}/revoke"), &format!("csrf={csrf}")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.text.contains("revoked"), "{}", r.text);
    let r = pat.get("/console").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/console/sign-in");
}

#[tokio::test]
async fn a_reader_gets_no_form_and_no_change() {
    let s = configured().await;
    let (_, reader) = key(&s, "rita", "reader").await;
    let mut b = Browser::new(&s);
    b.sign_in(&reader).await;
    let page = b.get("/console/config").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.text.contains("data-action"), "{}", page.text);
    for path in ["/console/new/experiments", "/console/edit/experiments/banner", "/console/import", "/console/resalt"] {
        assert_eq!(b.get(path).await.status, StatusCode::FORBIDDEN, "{path}");
    }
    let csrf = b.csrf("/console/config").await;
    let v = s.app.live().version;
    for path in [
        "/console/new/experiments",
        "/console/import/confirm",
        "/console/resalt/confirm",
        "/console/experiments/banner/grow",
    ] {
        let r = b.post(path, &form(&csrf, v, &[("id", "x"), ("yaml", "unit: user"), ("share", "60%")])).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}");
    }
    assert_eq!(s.app.live().version, v);
    assert!(!page.text.contains("href=\"/console/keys\""));
}

#[tokio::test]
async fn the_timeline_shows_each_scope_over_versions_with_resalts_and_planned_drafts() {
    let s = configured().await;
    let mut b = Browser::new(&s);
    b.sign_in(crate::support::ADMIN).await;
    let csrf = b.csrf("/console/timeline").await;
    let v = s.app.live().version;
    let r = b.post("/console/experiments/banner/stop/confirm", &form(&csrf, v, &[])).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let r = b.post("/console/resalt/confirm", &form(&csrf, v + 1, &[("unit", "user")])).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let page = b.get("/console/timeline").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    // banner held buckets from the first version until it stopped; color still holds them.
    assert!(
        page.text.contains(&format!(
            "data-owner=\"banner\" data-kind=\"experiment\" data-from=\"{v}\" data-to=\"{}\"",
            v + 1
        )),
        "{}",
        page.text
    );
    assert!(
        page.text.contains(&format!("data-owner=\"color\" data-kind=\"experiment\" data-from=\"{v}\">")),
        "{}",
        page.text
    );
    assert!(page.text.contains("data-owner=\"hold\" data-kind=\"holdout\""), "{}", page.text);
    assert!(
        page.text.contains(&format!("class=\"tl-resalt\" tabindex=\"0\" data-version=\"{}\"", v + 2)),
        "{}",
        page.text
    );
    assert!(page.text.contains("Drafts not planned (give the traffic above)"), "{}", page.text);
    // With the traffic, the draft gets its plan from the capacity planner.
    let planned = b.get("/console/timeline?daily_user=50000&rate=0.1&mde=0.05").await;
    assert_eq!(planned.status, StatusCode::OK, "{}", planned.text);
    assert!(planned.text.contains("data-owner=\"later\" data-kind=\"planned\""), "{}", planned.text);
    let bad = b.get("/console/timeline?daily_user=lots").await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.text.contains("daily_user: new units per day is a positive number"), "{}", bad.text);
}

#[tokio::test]
async fn the_experiment_page_counts_exposures_with_an_srm_check_and_traces_a_unit() {
    let s = configured().await;
    let mut b = Browser::new(&s);
    b.sign_in(crate::support::ADMIN).await;
    let none = b.get("/console/experiments/banner").await;
    assert!(none.text.contains("id=\"exposures-none\""), "{}", none.text);
    // 600 units in control and 400 in treatment of a 1:1 split: a mismatch; alice is included.
    let x = |unit: String, variant: &str| allot_store::Exposure {
        unit,
        experiment: "banner".into(),
        variant: variant.into(),
        day: "2026-12-01".into(),
        time: "2026-12-01T10:00:00Z".into(),
        version: 1,
    };
    let mut rows: Vec<_> = (0..600).map(|i| x(format!("u{i}"), "control")).collect();
    rows.extend((600..1000).map(|i| x(format!("u{i}"), "treatment")));
    rows.push(x("alice".into(), "treatment"));
    s.app.store().record_exposures(&rows).await.unwrap();
    let page = b.get("/console/experiments/banner").await;
    assert!(
        page.text.contains("data-variant=\"control\"><td><bdi>control</bdi></td><td class=\"num\" data-units=\"600\">"),
        "{}",
        page.text
    );
    assert!(page.text.contains("data-units=\"400\""), "alice is left out: {}", page.text);
    assert!(page.text.contains("SAMPLE RATIO MISMATCH"), "{}", page.text);
    assert!(page.text.contains("<td class=\"num\">500.0</td>"), "expected counts: {}", page.text);
    // Why is alice in it: the inclusion decides.
    let why = b.get("/console/experiments/banner/why?unit=alice").await;
    assert_eq!(why.status, StatusCode::OK, "{}", why.text);
    assert!(why.text.contains("variant treatment (INCLUDED)"), "{}", why.text);
    assert!(why.text.contains("data-step=\"inclusion\""));
    // Someone else: the steps down to the split or the reason it stopped.
    let why = b.get("/console/experiments/banner/why?unit=u7&context=country%3DSE").await;
    assert_eq!(why.status, StatusCode::OK, "{}", why.text);
    assert!(why.text.contains("id=\"trace\"") && why.text.contains("data-step=\"allocation\""), "{}", why.text);
    let bad = b.get("/console/experiments/banner/why?unit=u7&context=country").await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.text.contains("is not attribute=value"));
}

#[tokio::test]
async fn diagnostics_show_the_exclusivity_proof_and_exposures_to_two_exclusive_experiments_by_cause() {
    let s = crate::support::server().await;
    let yaml = CONFIG.replace(
        "  color:",
        "  hero:\n    unit: user\n    surfaces: [home]\n    share: 30%\n    variants: {a: 1, b: 1}\n    state: running\n  color:",
    );
    let r = s.put_config(&yaml, "*", "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let v = s.app.live().version;
    let x = |unit: &str, experiment: &str, variant: &str| allot_store::Exposure {
        unit: unit.into(),
        experiment: experiment.into(),
        variant: variant.into(),
        day: "2026-12-01".into(),
        time: allot_server::now(),
        version: v,
    };
    s.app
        .store()
        .record_exposures(&[
            x("u1", "banner", "control"),
            x("u1", "hero", "a"),
            x("alice", "banner", "treatment"),
            x("alice", "hero", "b"),
            x("u2", "banner", "control"),
        ])
        .await
        .unwrap();
    let mut b = Browser::new(&s);
    b.sign_in(crate::support::ADMIN).await;
    let page = b.get("/console/diagnostics").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.text.contains("Every exclusivity invariant holds"), "{}", page.text);
    assert!(
        page.text.contains("<bdi>banner</bdi></a></td><td><a href=\"/console/experiments/hero\"><bdi>hero</bdi>")
            || page
                .text
                .contains("<bdi>hero</bdi></a></td><td><a href=\"/console/experiments/banner\"><bdi>banner</bdi>"),
        "{}",
        page.text
    );
    let count = |cause: &str| -> u64 {
        let row = page.text.split(&format!("data-cause=\"{cause}\"")).nth(1).unwrap();
        attr_after(row, "data-count=\"").unwrap().parse().unwrap()
    };
    assert_eq!(count("unexplained"), 1, "u1: {}", page.text);
    assert_eq!(count("inclusion"), 1, "alice is included in banner");
    assert_eq!(count("identity_merge"), 0);
    assert!(
        page.text.contains("u1 in banner and hero") || page.text.contains("u1 in hero and banner"),
        "{}",
        page.text
    );
}

#[tokio::test]
async fn bandwidth_plans_the_drafts_on_the_live_state_with_what_cuped_buys() {
    let s = configured().await;
    let mut b = Browser::new(&s);
    b.sign_in(crate::support::ADMIN).await;
    let empty = b.get("/console/bandwidth").await;
    assert_eq!(empty.status, StatusCode::OK, "{}", empty.text);
    assert!(empty.text.contains("Give the new units per day"), "{}", empty.text);
    let page = b.get("/console/bandwidth?daily_user=50000&rate=0.1&mde=0.05&rho=0.5").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.text.contains("data-draft=\"later\""), "{}", page.text);
    assert!(page.text.contains("id=\"scopes\""), "{}", page.text);
    assert!(page.text.contains("Running, keeping their share"), "{}", page.text);
    // The numbers are the planner's, as POST /api/v1/capacity gives them.
    let body = serde_json::json!({"daily_units": {"user": 50000}, "experiments": {"later": {"metric": {"rate": 0.1}, "mde": 0.05, "rho": 0.5}}});
    let api = s.post("/api/v1/capacity", &body.to_string()).await;
    assert_eq!(api.status, StatusCode::OK, "{}", api.text);
    let needed = api.json()["experiments"]["later"]["units_needed"].as_f64().unwrap();
    assert!(page.text.contains(&format!("<td class=\"num\">{needed:.0}</td>")), "{needed}: {}", page.text);
    let bad = b.get("/console/bandwidth?daily_user=5&rho=2").await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.text.contains("rho: a correlation"), "{}", bad.text);
}
