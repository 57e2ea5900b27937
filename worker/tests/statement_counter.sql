-- Counts INSERT statements on products (a statement-level trigger fires once per statement,
-- however many rows it upserts).
DO $$
BEGIN
  CREATE TABLE upsert_statements (n BIGINT NOT NULL);
  INSERT INTO upsert_statements VALUES (0);
  CREATE FUNCTION count_upsert_statement() RETURNS trigger LANGUAGE plpgsql AS
    'BEGIN UPDATE upsert_statements SET n = n + 1; RETURN NULL; END';
  CREATE TRIGGER count_upserts AFTER INSERT ON products FOR EACH STATEMENT EXECUTE FUNCTION count_upsert_statement();
END $$;
