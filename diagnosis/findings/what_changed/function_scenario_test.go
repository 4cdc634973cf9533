package whatchanged_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/lab"
)

// applyPayment is the stored function the batch calls, as its baseline runs ran it (extra:
// what a redeployment adds): the account's row updated by its primary key, a ledger row
// inserted.
func applyPayment(extra string) string {
	return fmt.Sprintf(`CREATE OR REPLACE FUNCTION public.apply_payment(p_id int) RETURNS int LANGUAGE plpgsql AS $$
BEGIN
    UPDATE public.accounts SET balance = balance + 1 WHERE id = p_id;
    INSERT INTO public.ledger (account_id, amount) VALUES (p_id, 1);
    %s
    RETURN p_id;
END $$`, extra)
}

// TestFunctionRedeployed: between the baseline runs and tonight's, the function the batch
// calls was replaced (CREATE OR REPLACE FUNCTION) by a body that does the same writes and also
// counts the account's ledger rows, a scan of its 300,000 rows (no index on account_id): the
// same calls and rows of the top-level statement, each some 20 ms slower on an idle machine (6 s
// over the run's 300 calls). The statement's text never changed: what changed is the function,
// named with the call under it.
func TestFunctionRedeployed(t *testing.T) {
	lab.RunSlow(t, lab.SlowRun{Want: "function_changed",
		Setup: func(l *lab.Lab) {
			l.Exec(`CREATE TABLE public.accounts (id int PRIMARY KEY, balance numeric NOT NULL DEFAULT 0)`)
			l.Exec(`INSERT INTO public.accounts (id) SELECT g FROM generate_series(1, 10000) g`)
			l.Exec(`CREATE TABLE public.ledger (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, account_id int NOT NULL,
				amount numeric NOT NULL, at timestamptz NOT NULL DEFAULT now())`)
			l.Exec(`INSERT INTO public.ledger (account_id, amount) SELECT g % 10000 + 1, 1 FROM generate_series(1, 300000) g`)
			l.Exec(`VACUUM ANALYZE public.accounts, public.ledger`)
			l.Exec(applyPayment(""))
		},
		Usual: func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
			lab.CPU(t, c, 500*time.Millisecond)
			for i := range 300 {
				lab.MustExec(t, c, `SELECT public.apply_payment($1)`, i*30+1)
			}
		},
		Between: func(t *testing.T, l *lab.Lab) {
			l.Exec(applyPayment(`PERFORM count(*) FROM public.ledger WHERE account_id = p_id;`))
		},
		Check: func(t *testing.T, l *lab.Lab, runID int64, d *lab.RunDiagnosis) {
			slowed("SELECT public.apply_payment(")(t, l, runID, d)
			l.WaitFor("the function named, and nothing else changed", `SELECT array_agg(kind || ' ' || object) = '{function_changed public.apply_payment(integer)}'
				FROM telemetry.run_changes($1)`, runID)
		}})
}

// TestTriggerFunctionRedeployed: the audit trigger of the table the batch loads is as it was,
// but its function was redeployed to also count the audit rows of the operation, a scan of a
// growing table for each row: the load's INSERT is slower, and the change is the function,
// linked to the INSERT through the table whose trigger runs it. 2,000 rows, some 5 s more on
// an idle machine.
func TestTriggerFunctionRedeployed(t *testing.T) {
	audit := func(extra string) string {
		return fmt.Sprintf(`CREATE OR REPLACE FUNCTION public.work_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
			INSERT INTO public.work_audit VALUES (clock_timestamp(), TG_OP, to_jsonb(NEW));
			%s
			RETURN NULL; END $$`, extra)
	}
	lab.RunSlow(t, lab.SlowRun{Want: "function_changed",
		Setup: func(l *lab.Lab) {
			l.Exec(`CREATE TABLE public.work_audit (at timestamptz, op text, data jsonb)`)
			l.Exec(`INSERT INTO public.work_audit SELECT now(), 'INSERT', jsonb_build_object('id', g) FROM generate_series(1, 100000) g`)
			l.Exec(audit(""))
			l.Exec(`CREATE TRIGGER work_audit AFTER INSERT ON public.work FOR EACH ROW EXECUTE FUNCTION public.work_audit()`)
		},
		Usual: func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
			lab.CPU(t, c, time.Second)
			lab.MustExec(t, c, `TRUNCATE work`)
			lab.MustExec(t, c, `INSERT INTO work SELECT g, md5(g::text) FROM generate_series(1, 2000) g`)
		},
		Between: func(t *testing.T, l *lab.Lab) {
			l.Exec(audit(`PERFORM count(*) FROM public.work_audit WHERE op = TG_OP;`))
		},
		Check: func(t *testing.T, l *lab.Lab, runID int64, d *lab.RunDiagnosis) {
			slowed("work SELECT g, md5(g::text)")(t, l, runID, d)
			l.WaitFor("the trigger's function named, as the table's", `SELECT EXISTS (SELECT FROM telemetry.run_changes($1)
				WHERE kind = 'function_changed' AND object = 'public.work_audit()' AND detail LIKE '%writes to public.work its trigger fires for%')`, runID)
		}})
}
