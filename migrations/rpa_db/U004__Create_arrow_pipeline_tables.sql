DROP TABLE rpa4_customer_scores;
DROP TABLE survey_responses_copy;
