//! The Azure API Management policies edgegate does not run, each with the one-line
//! reason a document using it is refused at load (never skipped silently). Together
//! with `kinds::KINDS` this is every policy of Microsoft's policy reference; the
//! README's conformance table lists the same names (a test keeps them together).
//! Must not touch: parsing, the policies themselves.

/// (element, why it is refused).
pub const REFUSED: &[(&str, &str)] = &[
    (
        "azure-openai-emit-token-metric",
        "Azure only: Azure OpenAI token accounting",
    ),
    (
        "azure-openai-semantic-cache-lookup",
        "Azure only: Azure OpenAI embeddings",
    ),
    (
        "azure-openai-semantic-cache-store",
        "Azure only: Azure OpenAI embeddings",
    ),
    (
        "azure-openai-token-limit",
        "Azure only: Azure OpenAI token accounting",
    ),
    (
        "cosmosdb-data-source",
        "GraphQL resolvers are not supported",
    ),
    (
        "get-authorization-context",
        "Azure only: API Management's credential manager",
    ),
    ("http-data-source", "GraphQL resolvers are not supported"),
    (
        "invoke-dapr-binding",
        "needs a Dapr sidecar, which edgegate does not run with",
    ),
    ("llm-content-safety", "Azure only: Azure AI Content Safety"),
    (
        "llm-emit-token-metric",
        "needs an LLM token counter edgegate does not have",
    ),
    (
        "llm-semantic-cache-lookup",
        "needs an embeddings service edgegate does not have",
    ),
    (
        "llm-semantic-cache-store",
        "needs an embeddings service edgegate does not have",
    ),
    (
        "llm-token-limit",
        "needs an LLM token counter edgegate does not have",
    ),
    (
        "log-to-eventhub",
        "Azure only: Azure Event Hubs (trace reaches the request log and the plane)",
    ),
    ("publish-event", "GraphQL subscriptions are not supported"),
    (
        "publish-to-dapr",
        "needs a Dapr sidecar, which edgegate does not run with",
    ),
    ("redirect-content-urls", "planned"),
    ("send-service-bus-message", "Azure only: Azure Service Bus"),
    (
        "set-graphql-resolver",
        "GraphQL resolvers are not supported",
    ),
    ("sql-data-source", "GraphQL resolvers are not supported"),
    ("validate-graphql-request", "GraphQL APIs are not supported"),
    ("validate-odata-request", "OData APIs are not supported"),
    ("xsl-transform", "planned"),
];

/// Why `element` is refused, if it is a policy of the reference edgegate does not run.
pub fn reason(element: &str) -> Option<&'static str> {
    REFUSED.iter().find(|(e, _)| *e == element).map(|(_, r)| *r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::kinds::KINDS;

    /// The README's conformance table lists exactly the policies edgegate runs and the
    /// ones it refuses, so the reference cannot drift from the code.
    #[test]
    fn the_readme_table_is_every_policy_known() {
        let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"));
        let start = readme.find("### Policy conformance").expect("the section");
        let mut listed: Vec<&str> = readme[start..]
            .lines()
            .skip_while(|l| !l.starts_with("|---"))
            .skip(1)
            .take_while(|l| l.starts_with("| "))
            .filter_map(|l| l.split(" | ").next())
            .map(|c| c.trim_start_matches("| "))
            .collect();
        listed.sort_unstable();
        let mut known: Vec<&str> = KINDS
            .iter()
            .map(|k| k.element)
            .chain(REFUSED.iter().map(|(e, _)| *e))
            .collect();
        known.sort_unstable();
        assert_eq!(listed, known);
        for (e, _) in REFUSED {
            assert!(
                KINDS.iter().all(|k| k.element != *e),
                "{e} is both run and refused"
            );
        }
    }
}
