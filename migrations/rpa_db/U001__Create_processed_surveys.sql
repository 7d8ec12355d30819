DROP TABLE rpa1_processed_surveys;
