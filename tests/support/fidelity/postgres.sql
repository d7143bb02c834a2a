-- A kitchen-sink CRM for PostgreSQL fidelity tests: every object class Custodian's manifest
-- describes, with data, owned by several roles (run as the superuser, in a database created
-- with a non-default collation; roles app and reporting exist, and so do custodian and postgres).
CREATE EXTENSION citext;
CREATE EXTENSION pg_trgm;
CREATE SCHEMA crm AUTHORIZATION app;
COMMENT ON SCHEMA crm IS 'Customer data';
GRANT USAGE ON SCHEMA crm TO reporting, custodian;

SET ROLE app;
CREATE TYPE crm.deal_stage AS ENUM ('lead', 'qualified', 'won', 'lost');
COMMENT ON TYPE crm.deal_stage IS 'Sales pipeline';
CREATE DOMAIN crm.email AS citext CHECK (VALUE ~ '^[^@]+@[^@]+$');
CREATE TYPE crm.money_range AS RANGE (subtype = numeric);
CREATE TYPE crm.address AS (street text, city text, zip text);
CREATE COLLATION crm.german (provider = icu, locale = 'de-DE');
CREATE SEQUENCE crm.invoice_no INCREMENT BY 5 START 1000;

CREATE TABLE crm.companies (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL COLLATE crm.german,
    country char(2) DEFAULT 'DE',
    address crm.address,
    budget crm.money_range,
    created timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE crm.contacts (
    id serial PRIMARY KEY,
    company_id bigint REFERENCES crm.companies (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    email crm.email UNIQUE,
    name text COLLATE "C",
    name_upper text GENERATED ALWAYS AS (upper(name)) STORED,
    tags text[],
    photo bytea,
    prefs jsonb
);
ALTER TABLE crm.contacts ALTER COLUMN prefs SET STORAGE EXTERNAL;
CREATE TABLE crm.deals (
    id bigserial,
    company_id bigint NOT NULL,
    stage crm.deal_stage NOT NULL DEFAULT 'lead',
    amount numeric(12, 2) CHECK (amount >= 0),
    closed date NOT NULL,
    PRIMARY KEY (id, closed)
) PARTITION BY RANGE (closed);
CREATE TABLE crm.deals_2026_06 PARTITION OF crm.deals FOR VALUES FROM ('2026-06-01') TO ('2026-07-01');
CREATE TABLE crm.deals_2026_07 PARTITION OF crm.deals FOR VALUES FROM ('2026-07-01') TO ('2026-08-01');
CREATE TABLE crm.deals_other PARTITION OF crm.deals DEFAULT;
CREATE INDEX deals_company ON crm.deals (company_id);
CREATE TABLE crm.bookings (
    id int PRIMARY KEY,
    during tstzrange NOT NULL,
    EXCLUDE USING gist (during WITH &&)
);
CREATE UNLOGGED TABLE crm.sessions (token text PRIMARY KEY, contact_id int, seen timestamptz);
CREATE TABLE crm.audit (at timestamptz DEFAULT now(), what text);
ALTER TABLE crm.contacts ADD CONSTRAINT contacts_name_len CHECK (length(name) < 200) NOT VALID;
CREATE INDEX contacts_name_trgm ON crm.contacts USING gin (name gin_trgm_ops);
CREATE INDEX contacts_lower_email ON crm.contacts (lower(email::text)) WHERE email IS NOT NULL;

CREATE FUNCTION crm.touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO crm.audit (what) VALUES (TG_OP || ' ' || TG_TABLE_NAME);
    RETURN NEW;
END $$;
CREATE TRIGGER contacts_audit AFTER INSERT OR UPDATE ON crm.contacts
    FOR EACH ROW EXECUTE FUNCTION crm.touch();
CREATE TRIGGER companies_audit AFTER INSERT ON crm.companies
    FOR EACH ROW EXECUTE FUNCTION crm.touch();
ALTER TABLE crm.companies DISABLE TRIGGER companies_audit;
CREATE FUNCTION crm.deal_total(p_company bigint) RETURNS numeric LANGUAGE sql STABLE
    AS $$ SELECT coalesce(sum(amount), 0) FROM crm.deals WHERE company_id = p_company $$;
COMMENT ON FUNCTION crm.deal_total(bigint) IS 'Sum of a company''s deals';
CREATE PROCEDURE crm.close_deal(p_id bigint) LANGUAGE sql
    AS $$ UPDATE crm.deals SET stage = 'won' WHERE id = p_id $$;
CREATE AGGREGATE crm.concat_all(text) (sfunc = textcat, stype = text, initcond = '');
CREATE VIEW crm.open_deals WITH (security_barrier) AS
    SELECT d.id, d.stage, d.amount, c.name
    FROM crm.deals d JOIN crm.companies c ON c.id = d.company_id
    WHERE d.stage IN ('lead', 'qualified');
ALTER TABLE crm.contacts ENABLE ROW LEVEL SECURITY;
CREATE POLICY contacts_reporting ON crm.contacts FOR SELECT TO reporting USING (email IS NOT NULL);
CREATE RULE audit_no_delete AS ON DELETE TO crm.audit DO INSTEAD NOTHING;
COMMENT ON TABLE crm.contacts IS 'People';
COMMENT ON COLUMN crm.contacts.email IS 'Primary address';
ALTER DEFAULT PRIVILEGES IN SCHEMA crm GRANT SELECT ON TABLES TO reporting;
RESET ROLE;

-- Owned by the superuser, granted to the backup role and the application.
CREATE TABLE public.settings (key text PRIMARY KEY, value text);
GRANT SELECT ON public.settings TO custodian, app;

-- Data.
INSERT INTO crm.companies (name, address, budget)
    SELECT 'Firma ' || i || ' Größe', ROW('Straße ' || i, 'Köln', '5066' || (i % 10))::crm.address,
           crm.money_range(i * 100, i * 1000)
    FROM generate_series(1, 50) i;
INSERT INTO crm.contacts (company_id, email, name, tags, photo, prefs)
    SELECT 1 + i % 50, 'c' || i || '@example.org', '王' || i || ' Müller', ARRAY['a', 'b' || i],
           decode(md5(i::text), 'hex'), jsonb_build_object('n', i, 'vip', i % 7 = 0)
    FROM generate_series(1, 300) i;
INSERT INTO crm.deals (company_id, stage, amount, closed)
    SELECT 1 + i % 50, (ARRAY['lead', 'qualified', 'won', 'lost']::crm.deal_stage[])[1 + i % 4],
           i * 10.5, date '2026-06-01' + (i % 90)
    FROM generate_series(1, 500) i;
INSERT INTO crm.bookings
    SELECT i, tstzrange(timestamptz '2026-01-01' + i * interval '1 day',
                        timestamptz '2026-01-01' + i * interval '1 day' + interval '1 hour')
    FROM generate_series(1, 20) i;
INSERT INTO crm.sessions SELECT md5(i::text), i, now() FROM generate_series(1, 10) i;
SELECT nextval('crm.invoice_no') FROM generate_series(1, 7);
INSERT INTO public.settings VALUES ('theme', 'dark');

-- Materialized views: populated and deterministic, never populated, time-dependent, and one
-- reading another.
SET ROLE app;
CREATE MATERIALIZED VIEW crm.deals_by_stage AS
    SELECT stage, count(*) AS n, sum(amount) AS total FROM crm.deals GROUP BY stage;
CREATE UNIQUE INDEX deals_by_stage_stage ON crm.deals_by_stage (stage);
CREATE MATERIALIZED VIEW crm.top_companies AS
    SELECT company_id, sum(amount) AS total FROM crm.deals GROUP BY company_id;
CREATE MATERIALIZED VIEW crm.stale_report AS SELECT count(*) AS n FROM crm.contacts WITH NO DATA;
CREATE MATERIALIZED VIEW crm.recent_contacts AS
    SELECT id FROM crm.contacts WHERE now() > timestamptz '2000-01-01';
CREATE MATERIALIZED VIEW crm.stage_share AS SELECT stage, n FROM crm.deals_by_stage;
GRANT SELECT ON ALL TABLES IN SCHEMA crm TO reporting;
GRANT SELECT (id, name) ON crm.companies TO custodian;
GRANT SELECT, INSERT ON crm.deals TO postgres;
GRANT USAGE ON SEQUENCE crm.invoice_no TO reporting;
RESET ROLE;

-- Names a table stream's file name and COPY must quote: a dot in the schema, a quote, a
-- pattern character and a space in the table, a capital and a space in a column; values with
-- tabs, newlines and backslashes, which COPY text escapes.
CREATE SCHEMA "odd.schema" AUTHORIZATION app;
CREATE TABLE "odd.schema"."we""ird * name" (id int PRIMARY KEY, "Col Name" text, raw bytea);
INSERT INTO "odd.schema"."we""ird * name" VALUES
    (1, E'tab\there', '\x00ff'), (2, E'line\nbreak and back\\slash', NULL), (3, NULL, '\x');

-- Large objects, with an owner, a grant and a comment.
SELECT lo_from_bytea(424242, convert_to('signed contract', 'UTF8'));
SELECT lo_from_bytea(424243, decode(repeat('ab', 5000), 'hex'));
ALTER LARGE OBJECT 424242 OWNER TO app;
GRANT SELECT ON LARGE OBJECT 424242 TO reporting;
COMMENT ON LARGE OBJECT 424242 IS 'Contract scan';

-- The database's own properties.
COMMENT ON DATABASE fidelity IS 'Kitchen sink';
ALTER DATABASE fidelity SET search_path = crm, public;
ALTER DATABASE fidelity SET work_mem = '8MB';
ALTER ROLE reporting IN DATABASE fidelity SET statement_timeout = '30s';
REVOKE CONNECT ON DATABASE fidelity FROM PUBLIC;
GRANT CONNECT ON DATABASE fidelity TO reporting, custodian, app;
