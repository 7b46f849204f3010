//! Paged lists, one pager for every reader of a cluster (snapshots, `capture`,
//! `audit`).
//!
//! A list of a large cluster is read in pages of `limit` objects, following the
//! `continue` token each page carries. The token names a point in etcd's history; once
//! etcd compacts past it (every few minutes on a busy cluster) the next page is
//! refused with 410 Gone. The API server then offers two ways on (its `Status` says
//! so): restart the list, or continue from the *inconsistent* token it puts in the
//! Status's `metadata.continue` (the rest of the list at the latest version, so the
//! pages are no longer one consistent snapshot). The pager restarts first (up to
//! [`RESTARTS`] times, a consistent list is worth a re-read), then takes the offered
//! token, so a list that keeps expiring under churn still ends; more than
//! [`MAX_EXPIRED`] expiries of one list is an error, never a loop.

use std::future::Future;

use kube::api::{Api, ListParams, ObjectList, PartialObjectMeta};

/// Objects per page: the API server's own default page size for clients that page.
pub const PAGE: u32 = 500;

/// Times a list is restarted from the beginning after its token expired.
pub const RESTARTS: u32 = 2;

/// The most expired tokens one list recovers from (restarts and inconsistent
/// continuations together); the next 410 is returned as the error.
pub const MAX_EXPIRED: u32 = 4;

/// One page: its items and the token of the next page (`None` or empty: the last).
pub type Page<T> = (Vec<T>, Option<String>);

/// Every item of a list, page by page: `params` (labels, fields, ...) with `limit`
/// and `continue` set by the pager; `get` reads one page. 410 Gone on a continued
/// page is recovered as the module says.
pub async fn pages<T, F, Fut>(
    params: &ListParams,
    page: u32,
    mut get: F,
) -> Result<Vec<T>, kube::Error>
where
    F: FnMut(ListParams) -> Fut,
    Fut: Future<Output = Result<Page<T>, kube::Error>>,
{
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    let mut expired = 0;
    loop {
        let mut lp = params.clone().limit(page);
        lp.continue_token = token.clone();
        match get(lp).await {
            Ok((items, next)) => {
                out.extend(items);
                match next.filter(|t| !t.is_empty()) {
                    Some(t) => token = Some(t),
                    None => return Ok(out),
                }
            }
            // A 410 on the first page is not an expired token (there is none): an error.
            Err(kube::Error::Api(status)) if status.code == 410 && token.is_some() => {
                expired += 1;
                if expired > MAX_EXPIRED {
                    return Err(kube::Error::Api(status));
                }
                let offered = status
                    .metadata
                    .as_ref()
                    .and_then(|m| m.continue_.clone())
                    .filter(|t| !t.is_empty());
                match offered {
                    Some(t) if expired > RESTARTS => token = Some(t),
                    _ => {
                        out.clear();
                        token = None;
                    }
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Every object `api` lists with `params`, in pages of [`PAGE`].
pub async fn list_all<K>(api: &Api<K>, params: &ListParams) -> Result<Vec<K>, kube::Error>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    pages(params, PAGE, |lp| async move {
        let list: ObjectList<K> = api.list(&lp).await?;
        Ok((list.items, list.metadata.continue_))
    })
    .await
}

/// The metadata of every object `api` lists with `params` (no object bodies, Secret
/// data never), in pages of `page`.
pub async fn list_all_metadata<K>(
    api: &Api<K>,
    params: &ListParams,
    page: u32,
) -> Result<Vec<PartialObjectMeta<K>>, kube::Error>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    pages(params, page, |lp| async move {
        let list = api.list_metadata(&lp).await?;
        Ok((list.items, list.metadata.continue_))
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta;
    use kube::core::Status;

    use super::*;

    /// 410 Gone as the API server sends it, with its inconsistent token if any.
    fn gone(offered: Option<&str>) -> kube::Error {
        let mut status = Status::failure("The provided continue parameter is too old", "Expired");
        status.code = 410;
        status.metadata = offered.map(|t| ListMeta {
            continue_: Some(t.into()),
            ..Default::default()
        });
        kube::Error::Api(Box::new(status))
    }

    /// A list of `n` items in pages of 2 whose tokens expire on the pages `expire`
    /// says (by request number), offering `offered` then; records every request.
    struct Source {
        n: usize,
        expire: Vec<usize>,
        offered: Option<&'static str>,
        requests: RefCell<Vec<(Option<String>, Option<String>)>>,
    }

    impl Source {
        async fn get(&self, lp: ListParams) -> Result<Page<usize>, kube::Error> {
            let request = {
                let mut r = self.requests.borrow_mut();
                r.push((lp.continue_token.clone(), lp.label_selector.clone()));
                r.len()
            };
            assert_eq!(lp.limit, Some(2), "every page asks for the page size");
            if self.expire.contains(&request) {
                return Err(gone(self.offered));
            }
            let start = match lp.continue_token.as_deref() {
                None => 0,
                Some("inconsistent") => 4,
                Some(t) => t.parse().unwrap(),
            };
            let end = (start + 2).min(self.n);
            Ok((
                (start..end).collect(),
                (end < self.n).then(|| end.to_string()),
            ))
        }
    }

    fn source(n: usize, expire: &[usize], offered: Option<&'static str>) -> Source {
        Source {
            n,
            expire: expire.to_vec(),
            offered,
            requests: RefCell::default(),
        }
    }

    fn params() -> ListParams {
        ListParams::default().labels("owner=helm")
    }

    #[tokio::test]
    async fn pages_follow_continue_tokens_and_keep_the_callers_selectors() {
        let s = source(5, &[], None);
        let got = pages(&params(), 2, |lp| s.get(lp)).await.unwrap();
        assert_eq!(got, vec![0, 1, 2, 3, 4]);
        let requests = s.requests.borrow();
        let tokens: Vec<_> = requests.iter().map(|r| r.0.as_deref()).collect();
        assert_eq!(tokens, vec![None, Some("2"), Some("4")]);
        assert!(
            requests
                .iter()
                .all(|r| r.1.as_deref() == Some("owner=helm"))
        );
    }

    #[tokio::test]
    async fn an_expired_token_restarts_the_list_without_duplicates() {
        // Request 2 (the second page) expires: the list restarts from the start.
        let s = source(5, &[2], None);
        let got = pages(&params(), 2, |lp| s.get(lp)).await.unwrap();
        assert_eq!(got, vec![0, 1, 2, 3, 4]);
        let tokens: Vec<_> = s.requests.borrow().iter().map(|r| r.0.clone()).collect();
        assert_eq!(tokens[..3], [None, Some("2".into()), None]);
    }

    #[tokio::test]
    async fn after_the_restarts_the_offered_inconsistent_token_is_taken() {
        // Every second page expires: two restarts, then the Status's token goes on.
        let s = source(6, &[2, 4, 6], Some("inconsistent"));
        let got = pages(&params(), 2, |lp| s.get(lp)).await.unwrap();
        assert_eq!(got, vec![0, 1, 4, 5]);
        let tokens: Vec<_> = s.requests.borrow().iter().map(|r| r.0.clone()).collect();
        assert_eq!(tokens.last().unwrap().as_deref(), Some("inconsistent"));
    }

    #[tokio::test]
    async fn expiring_forever_is_an_error_not_a_loop() {
        let every_continued_page: Vec<usize> = (1..100).filter(|r| r % 2 == 0).collect();
        let s = source(6, &every_continued_page, None);
        let err = pages(&params(), 2, |lp| s.get(lp)).await.unwrap_err();
        assert!(
            matches!(err, kube::Error::Api(ref st) if st.code == 410),
            "{err}"
        );
        assert_eq!(s.requests.borrow().len() as u32, 2 * (MAX_EXPIRED + 1));
    }

    #[tokio::test]
    async fn gone_on_the_first_page_is_an_error() {
        let s = source(6, &[1], Some("inconsistent"));
        let err = pages(&params(), 2, |lp| s.get(lp)).await.unwrap_err();
        assert!(
            matches!(err, kube::Error::Api(ref st) if st.code == 410),
            "{err}"
        );
        assert_eq!(s.requests.borrow().len(), 1);
    }
}
