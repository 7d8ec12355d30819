CREATE INDEX rpa1_processed_surveys_customer_idx ON rpa1_processed_surveys (customer_id);
CREATE INDEX rpa1_processed_surveys_status_idx ON rpa1_processed_surveys (status, processed_at);
