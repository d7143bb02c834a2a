-- A kitchen-sink CRM for MariaDB fidelity tests, loaded into a latin1 database: several
-- storage engines and collations, generated columns, checks, foreign keys, a full-text index,
-- views (one reading another), routines, triggers, an event and a sequence; values a table
-- stream must escape (tabs, newlines, backslashes, NUL, the text NULL and \N), bits, points
-- and doubles; a table whose name needs quoting.
CREATE TABLE companies (
    id int AUTO_INCREMENT PRIMARY KEY,
    name varchar(200) COLLATE latin1_german1_ci NOT NULL,
    country char(2) DEFAULT 'DE',
    created datetime(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    flags bit(5) DEFAULT b'101',
    location point,
    ratio double
) ENGINE=InnoDB COMMENT='Customers';
CREATE TABLE `odd table` (
    `we``ird col` varchar(50) CHARACTER SET utf8mb4 PRIMARY KEY,
    `raw` varbinary(20),
    stamp timestamp(6) NULL
) ENGINE=InnoDB;
CREATE TABLE contacts (
    id int AUTO_INCREMENT PRIMARY KEY,
    company_id int,
    email varchar(190) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin UNIQUE,
    name varchar(200) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci,
    name_upper varchar(200) CHARACTER SET utf8mb4 AS (upper(name)) VIRTUAL,
    score decimal(8,2) CHECK (score >= 0),
    photo blob,
    CONSTRAINT contacts_company FOREIGN KEY (company_id) REFERENCES companies (id) ON DELETE CASCADE,
    FULLTEXT KEY contacts_name_ft (name)
) ENGINE=InnoDB;
CREATE TABLE notes (
    id int AUTO_INCREMENT PRIMARY KEY,
    contact_id int,
    body text CHARACTER SET utf8mb4,
    KEY notes_contact (contact_id)
) ENGINE=MyISAM;
CREATE TABLE events_log (
    at datetime NOT NULL,
    what varchar(100)
) ENGINE=Aria;
CREATE TABLE deals (
    id int NOT NULL,
    company_id int NOT NULL,
    amount decimal(12,2) NOT NULL,
    closed date NOT NULL,
    PRIMARY KEY (id, closed)
) ENGINE=InnoDB
  PARTITION BY RANGE (YEAR(closed)) (
    PARTITION p2025 VALUES LESS THAN (2026),
    PARTITION p2026 VALUES LESS THAN (2027),
    PARTITION pmax VALUES LESS THAN MAXVALUE
  );
CREATE SEQUENCE invoice_no START WITH 1000 INCREMENT BY 5;

CREATE VIEW company_contacts AS
    SELECT c.id AS company_id, c.name AS company, k.email FROM companies c JOIN contacts k ON k.company_id = c.id;
CREATE VIEW vip_contacts AS SELECT company, email FROM company_contacts WHERE email LIKE 'c1%';

DELIMITER //
CREATE PROCEDURE close_deal(IN p_id int)
    MODIFIES SQL DATA
BEGIN
    UPDATE deals SET amount = amount * 1.1 WHERE id = p_id;
    INSERT INTO events_log VALUES (NOW(), CONCAT('closed ', p_id));
END //
CREATE FUNCTION deal_total(p_company int) RETURNS decimal(14,2)
    READS SQL DATA
BEGIN
    RETURN (SELECT COALESCE(SUM(amount), 0) FROM deals WHERE company_id = p_company);
END //
CREATE TRIGGER contacts_touch BEFORE UPDATE ON contacts FOR EACH ROW
BEGIN
    SET NEW.score = COALESCE(NEW.score, 0);
END //
CREATE TRIGGER contacts_log AFTER INSERT ON contacts FOR EACH ROW
    INSERT INTO events_log VALUES (NOW(), CONCAT('contact ', NEW.id)) //
DELIMITER ;
CREATE EVENT nightly_cleanup ON SCHEDULE EVERY 1 DAY STARTS '2026-12-02 03:00:00'
    DISABLE DO DELETE FROM events_log WHERE at < NOW() - INTERVAL 30 DAY;

INSERT INTO companies (name, country, flags, location, ratio)
    SELECT CONCAT('Firma ', seq, ' Größe'), IF(seq % 2, 'DE', 'AT'), seq % 32,
           IF(seq % 3, ST_GeomFromText(CONCAT('POINT(', seq, ' 1.5)')), NULL), seq / 7e0
    FROM seq_1_to_40;
INSERT INTO `odd table` VALUES
    ('tab\there', X'00095C0A0D1A4E', '2026-03-29 01:30:00.123456'),
    ('new\nline\\back', NULL, NULL),
    ('NULL', X'', '1999-12-31 23:59:59'),
    ('\\N', X'5C4E', NULL),
    ('', X'FF', '2038-01-19 03:14:07');
INSERT INTO contacts (company_id, email, name, score, photo)
    SELECT 1 + seq % 40, CONCAT('c', seq, '@example.org'), CONCAT('王', seq, ' Müller'), seq / 3,
           UNHEX(MD5(seq)) FROM seq_1_to_250;
INSERT INTO notes (contact_id, body) SELECT seq, REPEAT('note ', seq % 20) FROM seq_1_to_100;
INSERT INTO deals SELECT seq, 1 + seq % 40, seq * 10.5, DATE('2025-11-01') + INTERVAL (seq % 120) DAY FROM seq_1_to_300;
