DROP VIEW processing_summary;
DROP VIEW customer_satisfaction;
