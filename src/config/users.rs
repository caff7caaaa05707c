//! Users and groups of the config document: APIM's developer accounts and the groups
//! that products are visible to. A subscription may belong to a user (`ownerId`), so a
//! call made with its key carries `context.User`; a product lists its `groups` for
//! `context.Product.Groups`. APIM's three system groups (administrators, developers,
//! guests) exist whether or not the document lists them, and every user is in
//! developers, as APIM puts every developer account there. A user who is not active
//! (blocked, pending, deleted) cannot call with their subscriptions, as in APIM.
//! Must not touch: subscriptions' keys, policies.

use std::collections::HashMap;

use super::json::{Errors, Fields};
use super::{Group, User};

const GROUP_FIELDS: &[&str] = &[
    "id",
    "name",
    "displayName",
    "description",
    "type",
    "externalId",
];
const USER_FIELDS: &[&str] = &[
    "id",
    "email",
    "firstName",
    "lastName",
    "note",
    "registrationDate",
    "state",
    "identities",
    "groups",
];
const IDENTITY_FIELDS: &[&str] = &["provider", "id"];

/// APIM's system groups: id and name.
const SYSTEM_GROUPS: [(&str, &str); 3] = [
    ("administrators", "Administrators"),
    ("developers", "Developers"),
    ("guests", "Guests"),
];

/// The groups of the document, then the system groups it does not list.
pub fn groups(top: &Fields, errors: &mut Errors) -> Vec<Group> {
    let mut list: Vec<Group> = Vec::new();
    let mut seen: HashMap<String, String> = HashMap::new();
    for (path, v) in top.array("groups", errors) {
        let Some(f) = Fields::of(v, &path, GROUP_FIELDS, errors) else {
            continue;
        };
        let id = super::entities::unique_id(&f, &path, &mut seen, errors);
        if let Some(t) = f.str("type", errors) {
            if !matches!(t, "custom" | "system" | "external") {
                errors.push(
                    &f.path("type"),
                    format!("'{t}' is not custom, system or external"),
                );
            }
        }
        let _ = f.str("externalId", errors);
        let name = f.display_name(id, errors);
        list.push(Group {
            id: id.to_string(),
            name: name.to_string(),
            description: f.str("description", errors).unwrap_or_default().to_string(),
        });
    }
    for (id, name) in SYSTEM_GROUPS {
        if !list.iter().any(|g| g.id == id) {
            list.push(Group {
                id: id.to_string(),
                name: name.to_string(),
                description: String::new(),
            });
        }
    }
    list
}

/// The index of each group id `ids` names, with an error per unknown one.
pub fn group_indexes(f: &Fields, key: &str, groups: &[Group], errors: &mut Errors) -> Vec<u32> {
    let mut out = Vec::new();
    for (i, g) in f
        .str_array(key, errors)
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        match groups.iter().position(|x| x.id == g) {
            Some(ix) if !out.contains(&(ix as u32)) => out.push(ix as u32),
            Some(_) => {}
            None => errors.push(
                &format!("{}[{i}]", f.path(key)),
                format!("group '{g}' is not in groups"),
            ),
        }
    }
    out
}

/// The users of the document.
pub fn users(top: &Fields, groups: &[Group], errors: &mut Errors) -> Vec<User> {
    let developers = groups
        .iter()
        .position(|g| g.id == "developers")
        .map(|i| i as u32);
    let mut list = Vec::new();
    let mut seen: HashMap<String, String> = HashMap::new();
    for (path, v) in top.array("users", errors) {
        let Some(f) = Fields::of(v, &path, USER_FIELDS, errors) else {
            continue;
        };
        let id = super::entities::unique_id(&f, &path, &mut seen, errors);
        let active = match f.str("state", errors).unwrap_or("active") {
            "active" => true,
            "blocked" | "pending" | "deleted" => false,
            other => {
                errors.push(
                    &f.path("state"),
                    format!("'{other}' is not one of active, blocked, pending, deleted"),
                );
                false
            }
        };
        let registered = f.str("registrationDate", errors).and_then(|d| {
            let secs = crate::telemetry::parse_rfc3339(d.trim());
            if secs.is_none() {
                errors.push(&f.path("registrationDate"), "must be an RFC 3339 time");
            }
            secs
        });
        let mut identities = Vec::new();
        for (ipath, iv) in f.array("identities", errors) {
            if let Some(i) = Fields::of(iv, &ipath, IDENTITY_FIELDS, errors) {
                let provider = i.required_str("provider", errors).unwrap_or_default();
                let id = i.required_str("id", errors).unwrap_or_default();
                identities.push((provider.to_string(), id.to_string()));
            }
        }
        let mut member_of = group_indexes(&f, "groups", groups, errors);
        if let Some(d) = developers.filter(|d| !member_of.contains(d)) {
            member_of.push(d);
        }
        let text = |key: &str, errors: &mut Errors| f.str(key, errors).map(str::to_string);
        list.push(User {
            id: id.to_string(),
            email: text("email", errors),
            first_name: text("firstName", errors),
            last_name: text("lastName", errors),
            note: text("note", errors),
            registered,
            identities,
            groups: member_of,
            active,
        });
    }
    list
}

/// The user a subscription's `ownerId` names (`/users/{id}`, or a full resource id
/// ending so), with an error when it is not one of `users`.
pub fn owner(f: &Fields, users: &[User], errors: &mut Errors) -> Option<u32> {
    let owner = f.str("ownerId", errors)?;
    let Some((_, id)) = owner.rsplit_once("/users/") else {
        errors.push(&f.path("ownerId"), "expected /users/{userId}");
        return None;
    };
    match users.iter().position(|u| u.id == id) {
        Some(i) => Some(i as u32),
        None => {
            errors.push(&f.path("ownerId"), format!("user '{id}' is not in users"));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{compile, ConfigSource};

    const API: &str = r#""apis": [{"id": "a", "path": "a", "serviceUrl": "http://h"}]"#;

    fn errors_of(rest: &str) -> Vec<String> {
        let text = format!(r#"{{"schemaVersion": 1, {API}, {rest}}}"#);
        match compile(&text, ConfigSource::Service) {
            Ok(_) => Vec::new(),
            Err(e) => e.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn users_groups_and_owners_are_checked_with_their_paths() {
        let errs = errors_of(
            r#""groups": [{"id": "gold", "type": "vip"}, {"id": "gold"}],
               "users": [{"id": "u1", "state": "asleep", "registrationDate": "yesterday",
                          "groups": ["gold", "silver"], "identities": [{"provider": "Basic"}]}],
               "products": [{"id": "p", "groups": ["bronze"]}],
               "subscriptions": [{"id": "s1", "scope": "/apis", "primaryKey": "k1234567890", "ownerId": "/users/nobody"},
                                 {"id": "s2", "scope": "/apis", "primaryKey": "k2234567890", "ownerId": "u1"}]"#,
        );
        for want in [
            "groups[0].type: 'vip' is not custom, system or external",
            "groups[1].id: duplicate id 'gold' (first at groups[0])",
            "users[0].state: 'asleep' is not one of active, blocked, pending, deleted",
            "users[0].registrationDate: must be an RFC 3339 time",
            "users[0].groups[1]: group 'silver' is not in groups",
            "users[0].identities[0].id: required",
            "products[0].groups[0]: group 'bronze' is not in groups",
            "subscriptions[0].ownerId: user 'nobody' is not in users",
            "subscriptions[1].ownerId: expected /users/{userId}",
        ] {
            assert!(
                errs.iter().any(|e| e == want),
                "missing {want:?} in {errs:#?}"
            );
        }
    }

    #[test]
    fn owners_groups_and_system_groups_resolve() {
        let text = format!(
            r#"{{"schemaVersion": 1, {API},
               "groups": [{{"id": "gold", "displayName": "Gold partners"}}, {{"id": "developers", "name": "Devs", "type": "system"}}],
               "users": [{{"id": "ann", "email": "ann@example.com", "groups": ["gold"]}},
                         {{"id": "bob", "state": "blocked"}}],
               "products": [{{"id": "p", "apis": ["a"], "groups": ["gold", "guests"]}}],
               "subscriptions": [
                 {{"id": "s1", "scope": "/products/p", "primaryKey": "k1234567890", "secondaryKey": "k2234567890",
                   "ownerId": "/subscriptions/x/resourceGroups/y/providers/Microsoft.ApiManagement/service/z/users/ann"}},
                 {{"id": "s2", "scope": "/apis", "primaryKey": "k3234567890", "ownerId": "/users/bob"}}]}}"#
        );
        let rt = compile(&text, ConfigSource::Service).expect("compiles");
        let names: Vec<&str> = rt.groups.iter().map(|g| g.name.as_str()).collect();
        // the document's groups first (its "developers" keeps its own name), then the
        // system groups it did not list
        assert_eq!(names, ["Gold partners", "Devs", "Administrators", "Guests"]);
        let ann = &rt.users[0];
        assert_eq!(ann.groups, [0, 1], "listed groups, then developers");
        assert_eq!(rt.products[0].groups, [0, 3]);
        let (s1, s2) = (&rt.subscriptions[0], &rt.subscriptions[1]);
        assert_eq!((s1.owner, s1.active), (Some(0), true));
        assert_eq!(s1.primary_key.as_deref(), Some("k1234567890"));
        assert_eq!(s1.secondary_key.as_deref(), Some("k2234567890"));
        // a blocked user's subscription cannot call
        assert_eq!((s2.owner, s2.active), (Some(1), false));
    }
}
