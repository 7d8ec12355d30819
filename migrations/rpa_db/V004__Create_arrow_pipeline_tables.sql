-- rpa4 (Arrow): SurveyHub's survey_responses copied as is, and per-customer
-- scores computed in Polars. copied_at and scored_at are not in the data the
-- flow loads: bulk_insert leaves them to their defaults.
CREATE TABLE survey_responses_copy (
    survey_id     integer PRIMARY KEY,
    customer_id   integer NOT NULL,
    response_data text NOT NULL,
    submitted_at  timestamptz NOT NULL,
    processed     integer NOT NULL,
    copied_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE rpa4_customer_scores (
    customer_id       integer PRIMARY KEY,
    responses         integer NOT NULL,
    scored            integer NOT NULL,
    average_score     numeric(4, 2),
    last_submitted_at timestamptz NOT NULL,
    scored_at         timestamptz NOT NULL DEFAULT now()
);
