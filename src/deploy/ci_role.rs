//! `ci:`: the stage's deploy role for GitHub Actions, in its own stack
//! (`contract::ci_stack`, from `templates/ci.yaml`), created by `wsctl ci-role`.
//!
//! The role's policies are the stage's deployer and operator policies, the documents `wsctl
//! iam-policy --stage S` prints (inserted here from [`iam_policy::policies`], never
//! copied). Its trust policy admits GitHub's OIDC tokens for `sts.amazonaws.com` whose
//! `sub` names the stage's repository and one of its branches or environments.
//!
//! Why a stack of its own, run by hand, rather than the bootstrap stack or `deploy`: the
//! bootstrap stack is shared by every stage of the account and region, so one stage's
//! deploy would rewrite (or, rendered without the others, delete) the other stages'
//! roles; and a role that `deploy` itself updates would be updated by CI with the role's
//! own credentials, letting a workflow widen its own trust. Here the role and its stack
//! lie outside what the deployer policy grants: only an administrator's `wsctl ci-role`
//! changes them (after a `ci:` change, or a wsctl upgrade that changes the policy).

use super::cfn_yaml::{CfnYamlError, Template};
use super::iam_policy;
use super::render::{tags, RenderError, Rendered, StackKind, CI_TEMPLATE};
use crate::stage::Stage;
use std::collections::BTreeMap;

/// The CI stack of a stage with a `ci:` section.
pub fn render_ci(stage: &Stage) -> Result<Rendered, RenderError> {
    let ci = stage.ci.as_ref().ok_or_else(|| {
        RenderError::Stage(format!(
            "stage '{}' has no `ci:` section: add ci.github.repository and its branches or environments \
             (docs/deploy.md, \"Deploying from CI\")",
            stage.name
        ))
    })?;
    // Both policies of `wsctl iam-policy --stage S`: the deployer's for `wsctl deploy`, the
    // operator's for what a deploy job also runs (`deploy --smoke`, `wsctl smoke`, `status`).
    let policies = iam_policy::policies(stage).map_err(|e| RenderError::Stage(format!("{e:#}")))?;
    let mut template = Template::parse("ci.yaml", CI_TEMPLATE)?;
    let role = template.resource_mut("DeployRole")?;
    let list = role
        .get_mut("Properties")
        .and_then(|p| p.get_mut("Policies"))
        .and_then(serde_norway::Value::as_sequence_mut)
        .ok_or_else(|| CfnYamlError::MissingResource("DeployRole.Properties.Policies".into()))?;
    list.clear();
    for name in ["deployer", "operator"] {
        let document: serde_norway::Value = serde_norway::to_value(&policies[name]).map_err(CfnYamlError::from)?;
        let mut policy = serde_norway::Mapping::new();
        policy.insert("PolicyName".into(), format!("wsctl-{name}").into());
        policy.insert("PolicyDocument".into(), document);
        list.push(policy.into());
    }

    let parameters = BTreeMap::from([
        ("StageName".to_owned(), stage.name.clone()),
        ("OidcProviderArn".to_owned(), ci.oidc_provider_arn.clone().unwrap_or_default()),
        ("Subjects".to_owned(), ci.subjects().join(",")),
    ]);
    Ok(Rendered {
        kind: StackKind::Ci,
        stack_name: StackKind::Ci.stack_name(stage),
        body: template.to_yaml()?,
        template,
        parameters,
        tags: tags(stage),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn stage(ci: &str) -> Stage {
        let text = format!("region: eu-west-1\naccount: \"111111111111\"\n{ci}");
        Stage::parse(Path::new("stages/t.yaml"), "t", &text).expect("stage")
    }

    #[test]
    fn the_role_carries_exactly_the_stages_deployer_and_operator_policies() {
        let s = stage("ci:\n  github:\n    repository: acme/rt\n    branches: [main]\n");
        let rendered = render_ci(&s).unwrap();
        let policies = &rendered.template.resource("DeployRole").unwrap()["Properties"]["Policies"];
        for (i, name) in ["deployer", "operator"].into_iter().enumerate() {
            assert_eq!(policies[i]["PolicyName"].as_str(), Some(format!("wsctl-{name}").as_str()));
            let as_json: serde_json::Value = serde_json::to_value(&policies[i]["PolicyDocument"]).unwrap();
            assert_eq!(as_json, iam_policy::policies(&s).unwrap()[name], "{name}");
        }
        assert_eq!(policies.as_sequence().map(Vec::len), Some(2));
        assert_eq!(rendered.parameters["Subjects"], "repo:acme/rt:ref:refs/heads/main");
        assert_eq!(rendered.stack_name, "wsctl-ci-wsctl-t");
        let err = render_ci(&stage("")).unwrap_err().to_string();
        assert!(err.contains("ci:"), "{err}");
    }
}
