-- One row per customer: how satisfied, across the surveys processed so far.
CREATE VIEW customer_satisfaction AS
SELECT customer_id,
       count(*)                                AS surveys,
       round(avg(satisfaction_score), 2)       AS average_score,
       max(processed_at)                       AS last_processed_at
FROM rpa1_processed_surveys
WHERE status = 'completed'
GROUP BY customer_id;

CREATE VIEW processing_summary AS
SELECT processed_by,
       status,
       count(*)          AS surveys,
       max(processed_at) AS last_processed_at
FROM rpa1_processed_surveys
GROUP BY processed_by, status;
