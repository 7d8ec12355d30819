-- Scores computed by the rpa flows from SurveyHub's survey responses.
CREATE TABLE rpa1_processed_surveys (
    survey_id          integer PRIMARY KEY,
    customer_id        integer NOT NULL,
    satisfaction_score numeric(4, 2),
    processed_at       timestamptz NOT NULL,
    status             text NOT NULL CHECK (status IN ('completed', 'failed')),
    error              text,
    processed_by       text NOT NULL DEFAULT 'rpa1'
);
