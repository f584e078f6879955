-- The metrics worker hands the events topic's JSON records to ClickHouse as they are
-- (JSONEachRow) instead of decoding each one in Python: the engine parses JSON an order of
-- magnitude faster than the worker can. The record's top-level fields are the table's columns;
-- only its nested `context` is not. It is read into this EPHEMERAL column (never stored) and the
-- page, campaign and client columns take their values from it by DEFAULT. An insert that names
-- those columns itself (the native path, with rows built from Event models) is unaffected.
ALTER TABLE {database}.events
    ADD COLUMN IF NOT EXISTS context Tuple(
        page Tuple(
            url Nullable(String),
            path Nullable(String),
            title Nullable(String),
            referrer Nullable(String)
        ),
        campaign Tuple(
            source Nullable(String),
            medium Nullable(String),
            name Nullable(String),
            term Nullable(String),
            content Nullable(String)
        ),
        user_agent Nullable(String),
        locale Nullable(String),
        library Nullable(String)
    ) EPHEMERAL,
    MODIFY COLUMN page_url DEFAULT ifNull(context.page.url, ''),
    MODIFY COLUMN page_path DEFAULT ifNull(context.page.path, ''),
    MODIFY COLUMN page_title DEFAULT ifNull(context.page.title, ''),
    MODIFY COLUMN referrer DEFAULT ifNull(context.page.referrer, ''),
    MODIFY COLUMN utm_source DEFAULT ifNull(context.campaign.source, ''),
    MODIFY COLUMN utm_medium DEFAULT ifNull(context.campaign.medium, ''),
    MODIFY COLUMN utm_campaign DEFAULT ifNull(context.campaign.name, ''),
    MODIFY COLUMN utm_term DEFAULT ifNull(context.campaign.term, ''),
    MODIFY COLUMN utm_content DEFAULT ifNull(context.campaign.content, ''),
    MODIFY COLUMN user_agent DEFAULT ifNull(context.user_agent, ''),
    MODIFY COLUMN locale DEFAULT ifNull(context.locale, ''),
    MODIFY COLUMN library DEFAULT ifNull(context.library, '');
