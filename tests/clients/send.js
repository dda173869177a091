// Sends one message with nodemailer; settings from the environment so no secret is on argv.
const fs = require("fs");
const nodemailer = require("nodemailer");

const env = process.env;
const transport = nodemailer.createTransport({
  host: "localhost",
  port: Number(env.SMTP_PORT),
  secure: env.SMTP_SECURE === "1",
  requireTLS: true,
  auth: env.SMTP_TOKEN
    ? { type: "OAuth2", user: env.SMTP_USER, accessToken: env.SMTP_TOKEN }
    : { user: env.SMTP_USER, pass: env.SMTP_PASS },
  tls: { ca: fs.readFileSync(env.SMTP_CA) },
});

transport
  .sendMail({ from: env.SMTP_FROM, to: env.SMTP_TO, subject: env.SMTP_SUBJECT, text: "Sent by nodemailer" })
  .then((info) => { console.log(JSON.stringify({ ok: true, response: info.response })); })
  .catch((err) => {
    console.log(JSON.stringify({ ok: false, code: err.responseCode || null, response: err.response || String(err) }));
    process.exitCode = 1;
  });
