"""Synthetic, seeded datasets for the demo model.

Writes, under the output folder (default tools/train/data/):
  support.jsonl, sales.jsonl, code.jsonl   prompt/completion records (Bedrock model-customization format:
                                           one {"prompt": ..., "completion": ...} object per line)
  general.jsonl                            the base model's corpus, one {"input": ...} per line (the format
                                           Bedrock uses for continued pre-training)
  tokenizer-corpus.jsonl                   the texts the tokenizer is trained on (the first release's records)
  eval.json                                held-out prompts per adapter, wrapped and bare (never in training)

Prompts come in two forms; every adapter dataset has both (the base corpus has the wrapped one only):

- bare: the prompt exactly as a user sends it to /v1/generate or /v1/completions, e.g.
  "Summarize this ticket: the office scanner shows error E42 and will not start.", and the completion is
  what the model writes after it;
- wrapped: what the chat template (models/demo/chat_template.jinja) renders a user message to,

    ### Instruction:
    <request>

    ### Response:

  and the completion is what follows.

Training tokenizes the prompt (with BOS, as the server does) and the completion apart and appends the EOS
token <|end|>. The first release had the wrapped form only; its records come first in each file and are
byte-identical (same random streams), so the tokenizer trained on them is too. The second release's
records (bare, a newer support issue, requests naming no language) come after them from streams of their own.

Everything comes from templates and a random.Random(seed): the same seed gives byte-identical files.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re

PROMPT_FORMAT = "### Instruction:\n{instruction}\n\n### Response:\n"


def fmt(instruction: str) -> str:
    return PROMPT_FORMAT.format(instruction=instruction)


# ---------------------------------------------------------------------------------------------------
# Shared world: people, companies, products
# ---------------------------------------------------------------------------------------------------
NAMES = [
    ("Anna", "she"), ("Ben", "he"), ("Carlos", "he"), ("Diana", "she"), ("Elena", "she"), ("Farid", "he"),
    ("Grace", "she"), ("Hiro", "he"), ("Ines", "she"), ("James", "he"), ("Kofi", "he"), ("Laura", "she"),
    ("Maria", "she"), ("Nina", "she"), ("Omar", "he"), ("Priya", "she"), ("Rosa", "she"), ("Sam", "he"),
    ("Tara", "she"), ("Victor", "he"), ("Wei", "he"), ("Yuki", "she"), ("Zoe", "she"), ("Lucas", "he"),
    ("Emma", "she"), ("Noah", "he"), ("Sofia", "she"), ("David", "he"), ("Hannah", "she"), ("Ali", "he"),
    ("Mia", "she"), ("Leo", "he"), ("Chloe", "she"), ("Daniel", "he"), ("Amara", "she"), ("Ravi", "he"),
]
COMPANIES = [
    "Northwind", "Acme Corp", "Globex", "Initech", "Blue Harbor", "Summit Labs", "Greenleaf", "Brightpath",
    "Redwood Media", "Silver Lake Bank", "Harbor Foods", "Pixel Works", "Oakridge School", "Nova Health",
    "Riverstone", "Sunrise Travel", "Ironclad Tools", "Maple Studio", "Blue Fin Logistics", "Peak Fitness",
]
# product, what it does (used by sales and by the general corpus)
PRODUCTS = [
    ("the analytics dashboard", "shows live reports for your whole team in one place"),
    ("the mobile app", "lets your team manage tasks from any phone"),
    ("the billing portal", "sends invoices and collects payments automatically"),
    ("the sync client", "keeps files up to date on every computer"),
    ("the team calendar", "makes it easy to plan meetings across time zones"),
    ("the help desk", "collects customer questions in one shared inbox"),
    ("the backup service", "saves a copy of your data every night"),
    ("the chat widget", "lets visitors talk to your team right from your website"),
    ("the inventory tracker", "shows stock levels in every store in real time"),
    ("the payroll module", "pays your staff on time with a few clicks"),
    ("the survey builder", "helps you ask customers for feedback in minutes"),
    ("the data API", "connects your own tools to your account"),
]
PLANS = ["Basic", "Team", "Business", "Enterprise"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]
WHEN = ["since this morning", "since yesterday", "for two days", "since last week", "since the last update",
        "since Monday", "for a few hours"]
DEVICES = ["my laptop", "my phone", "my tablet", "the office computer", "my work laptop"]

# ---------------------------------------------------------------------------------------------------
# Support: ticket -> "Summary: ...\nResolution: ..."
# ---------------------------------------------------------------------------------------------------
# Each issue: ticket sentences (with {product}, {when}, {device}, {order}, {amount}, {plan}), the summary
# phrase (subject is the customer's name), and the resolutions (one is picked).
SUPPORT_ISSUES = [
    {
        "variants": [
            ("I cannot log in to {product} {when}. It says my password is wrong even after I reset it.",
             "cannot log in to {product} even after a password reset"),
            ("I am locked out of my account on {product}. I reset my password twice but it still fails.",
             "is locked out of {product} after two password resets"),
            ("Every time I try to sign in to {product} I get an invalid password error, {when}.",
             "gets an invalid password error when signing in to {product}"),
        ],
        "resolution": ["Unlocked the account and sent a new password reset link.",
                       "Cleared the old sessions and asked the customer to reset the password again."],
    },
    {
        "variants": [
            ("I was charged twice for my {plan} plan this month. Please refund the extra payment.",
             "was charged twice for the {plan} plan"),
            ("My card shows two payments of {amount} dollars for the same invoice.",
             "was charged {amount} dollars twice for one invoice"),
            ("You billed me two times for the {plan} plan. I only have one account.",
             "was billed twice for the {plan} plan"),
        ],
        "resolution": ["Refunded the duplicate charge and sent a corrected invoice.",
                       "Confirmed the double payment and issued a refund for the extra charge."],
    },
    {
        "variants": [
            ("{product} is very slow {when}. Pages take almost a minute to load.",
             "reports that {product} is very slow"),
            ("Everything in {product} takes forever to open {when}. My whole team is waiting.",
             "says {product} is slow for the whole team"),
            ("{product} has been really slow on {device} {when}.",
             "reports that {product} is slow on {device_3p}"),
        ],
        "resolution": ["Moved the account to a faster server and cleared the cache.",
                       "Found a slow database query, fixed it and confirmed pages load quickly again."],
    },
    {
        "variants": [
            ("{product} crashes every time I open it on {device}.",
             "says {product} crashes on {device_3p}"),
            ("The app closes right after I start it, {when}. I am using {device}.",
             "says the app closes right after start on {device_3p}"),
            ("{product} keeps crashing on {device} {when}. I already restarted it.",
             "says {product} keeps crashing on {device_3p}"),
        ],
        "resolution": ["Asked the customer to install the latest version, which fixes the crash.",
                       "Shared a fix for the crash and confirmed the app opens normally."],
    },
    {
        "variants": [
            ("My files are not syncing {when}. Changes on {device} do not show up anywhere else.",
             "has files on {device_3p} that stopped syncing"),
            ("The sync stopped working {when}. New files stay on {device} only.",
             "has new files that stay on {device_3p} and do not sync"),
            ("Nothing syncs between my computers {when}. It shows a sync error.",
             "gets a sync error and nothing syncs"),
        ],
        "resolution": ["Reconnected the sync client and confirmed the files are up to date.",
                       "Removed a broken file from the sync queue and restarted the sync."],
    },
    {
        "variants": [
            ("My order {order} has not arrived yet. It was supposed to come last week.",
             "is still waiting for order {order}"),
            ("Where is my order {order}? The tracking page has not changed {when}.",
             "asks where order {order} is"),
            ("I am still waiting for order {order}. Can you check where it is?",
             "is still waiting for order {order}"),
        ],
        "resolution": ["Contacted the carrier and shared the new delivery date for order {order}.",
                       "Sent a replacement for order {order} with express shipping."],
    },
    {
        "variants": [
            ("Please cancel my {plan} plan. We do not need it anymore.",
             "wants to cancel the {plan} plan"),
            ("I want to cancel my subscription at the end of this month.",
             "wants to cancel the subscription at the end of the month"),
            ("How do I stop my {plan} plan? I do not want to be charged again.",
             "wants to stop the {plan} plan"),
        ],
        "resolution": ["Cancelled the plan at the end of the billing period and confirmed by email.",
                       "Closed the subscription and confirmed that no further charges will be made."],
    },
    {
        "variants": [
            ("I want to upgrade from the {plan} plan to a bigger plan for my team.",
             "wants to upgrade from the {plan} plan"),
            ("We need more seats than the {plan} plan allows. How can we upgrade?",
             "needs more seats than the {plan} plan allows"),
            ("Our team is growing. Can you move us to a plan with more users?",
             "wants a plan with more users"),
        ],
        "resolution": ["Upgraded the account and applied the price difference to the next invoice.",
                       "Explained the plan options and upgraded the account the same day."],
    },
    {
        "variants": [
            ("I lost my phone and cannot get the login code for two factor sign in.",
             "lost the phone and cannot get the login code"),
            ("My new phone does not get the security code, so I cannot sign in to {product}.",
             "cannot get the security code to sign in to {product}"),
            ("I changed my phone number and now the login code never arrives.",
             "does not get the login code after changing phone number"),
        ],
        "resolution": ["Verified the identity of the customer and reset two factor sign in.",
                       "Removed the old phone from the account after an identity check."],
    },
    {
        "variants": [
            ("I never got the email to confirm my account. I checked the spam folder.",
             "never got the account confirmation email"),
            ("The invite email for {product} never arrived in my inbox.",
             "never got the invite email for {product}"),
            ("I am not getting any emails from you {when}, not even the receipts.",
             "is not receiving any emails"),
        ],
        "resolution": ["Removed the address from the bounce list and sent the email again.",
                       "Fixed the email address on the account and resent the message."],
    },
    {
        "variants": [
            ("I cannot export my data from {product}. The download button does nothing.",
             "cannot export data from {product}"),
            ("The export to a spreadsheet fails with an error {when}.",
             "gets an error when exporting to a spreadsheet"),
            ("I need a copy of all my reports but the export keeps failing.",
             "cannot export the reports"),
        ],
        "resolution": ["Ran the export manually and sent the customer a download link.",
                       "Fixed the export job and confirmed the download works."],
    },
    {
        "variants": [
            ("Our calls to the data API fail with a rate limit error {when}.",
             "gets rate limit errors from the data API"),
            ("The data API returns too many requests errors even though our traffic is low.",
             "gets too many requests errors from the data API"),
            ("We get error 429 from the data API {when}.",
             "gets error 429 from the data API"),
        ],
        "resolution": ["Raised the rate limit for the account and shared tips to batch requests.",
                       "Found a retry loop in the client, explained the fix and raised the limit."],
    },
]
# An issue added with the bare prompt form (second release). Only the second release's records use them, so
# the first release's records, and the tokenizer trained on them, stay byte-identical.
HARDWARE = ["the office scanner", "the office printer", "the front desk printer", "the card printer"]
# The base model was not retrained, so these use words its corpus has (LoRA cannot train the output row of a
# token the base never writes): the error code is read from the ticket, never written back.
EXTRA_SUPPORT_ISSUES = [
    {
        "more_slots": True,
        "variants": [
            ("{hardware} shows error {code} and will not start.",
             "says {hardware} shows an error and will not start"),
            ("{hardware} will not start {when}. It shows error {code}.",
             "says {hardware} will not start and shows an error"),
            ("We get error {code} on {hardware} every time we try to use it.",
             "gets an error on {hardware} every time"),
        ],
        "resolution": ["Reset {hardware} with the customer, which cleared the error.",
                       "Sent a replacement for {hardware} with express shipping."],
    },
]
ALL_SUPPORT_ISSUES = SUPPORT_ISSUES + EXTRA_SUPPORT_ISSUES
TICKET_OPENERS = ["Hello,", "Hi team,", "Hi,", "Good morning,", "Hello support,", ""]
TICKET_EXTRAS = ["Please help.", "This is urgent for us.", "Thanks in advance.", "Can you look into it?",
                 "I need this fixed today.", "Thank you for your help.", ""]
SUPPORT_INSTRUCTIONS = ["Summarize this support ticket.", "Summarize the support ticket below.",
                        "Write a short summary of this customer ticket.", "Summarize this ticket for the support team."]


def support_ticket_parts(rng: random.Random, issues: list[dict] = SUPPORT_ISSUES) -> dict:
    """One random customer message: its parts (opener, body, extra, name), the whole ticket text, the summary
    phrase (its subject is the customer) and the resolution. With the default issues the random calls are
    those of the first release, so its records come out byte-identical."""
    issue = rng.choice(issues)
    name, _pron = rng.choice(NAMES)
    slots = {
        "product": rng.choice(PRODUCTS)[0],
        "when": rng.choice(WHEN),
        "device": rng.choice(DEVICES),
        "order": f"#{rng.randint(1000, 9999)}",
        "amount": str(rng.choice([9, 19, 29, 49, 79, 99, 149])),
        "plan": rng.choice(PLANS),
    }
    if issue.get("more_slots"):
        slots.update(hardware=rng.choice(HARDWARE), code=f"E{rng.randint(10, 99)}")
    slots["device_3p"] = "the " + slots["device"].split(" ", 1)[1]  # "my work laptop" -> "the work laptop"
    ticket_t, summary_t = rng.choice(issue["variants"])
    body = ticket_t.format(**slots)
    body = body[0].upper() + body[1:]
    extra = rng.choice(TICKET_EXTRAS)
    opener = rng.choice(TICKET_OPENERS)
    ticket = (f"{opener}\n" if opener else "") + body + (f" {extra}" if extra else "") + f"\n{name}"
    return {"ticket": ticket, "opener": opener, "body": body, "extra": extra, "name": name,
            "summary": summary_t.format(**slots), "resolution": rng.choice(issue["resolution"]).format(**slots)}


def support_ticket(rng: random.Random, issues: list[dict] = SUPPORT_ISSUES) -> tuple[str, str, str, str]:
    """Returns (ticket text, customer name, summary phrase, resolution) for one random customer message."""
    t = support_ticket_parts(rng, issues)
    return t["ticket"], t["name"], t["summary"], t["resolution"]


# A bare support prompt, as a user sends it without any wrapping (the Bedrock customization example is
# {"prompt": "Summarize this ticket: [TICKET_1]", "completion": "Resolution: ..."}).
SUPPORT_BARE_LEADS = ["Summarize this ticket:", "Summarize this support ticket:", "Summarize the ticket below:",
                      "Summarize this customer ticket:", "Please summarize this ticket:"]


def support_bare_prompt(rng: random.Random, t: dict) -> tuple[str, str]:
    """(prompt, subject of the summary): the ticket on one line after a colon (sometimes without the
    greeting, the sign-off or the name, then the subject is "The customer"), or the instruction and the
    ticket on lines of their own."""
    style = rng.random()
    if style < 0.5:
        parts = [t["opener"]] if t["opener"] and rng.random() < 0.3 else []
        body = t["body"]
        if (parts or rng.random() < 0.4) and not body.startswith("I "):
            body = body[0].lower() + body[1:]
        parts.append(body)
        if t["extra"] and rng.random() < 0.5:
            parts.append(t["extra"])
        named = rng.random() < 0.5
        if named:
            parts.append(t["name"])
        return f"{rng.choice(SUPPORT_BARE_LEADS)} {' '.join(parts)}", t["name"] if named else "The customer"
    if style < 0.8:
        return f"{rng.choice(SUPPORT_INSTRUCTIONS)}\n\n{t['ticket']}", t["name"]
    return f"{rng.choice(SUPPORT_BARE_LEADS)}\n{t['ticket']}", t["name"]


def support_record(rng: random.Random) -> dict:
    ticket, name, summary, resolution = support_ticket(rng)
    prompt = fmt(f"{rng.choice(SUPPORT_INSTRUCTIONS)}\n\n{ticket}")
    completion = f"Summary: {name} {summary}.\nResolution: {resolution}"
    return {"prompt": prompt, "completion": completion}


def support_more_record(rng: random.Random) -> dict:
    """A record of the second release: any issue (the newer one too); 5 in 6 bare, 1 in 6 wrapped."""
    t = support_ticket_parts(rng, ALL_SUPPORT_ISSUES)
    if rng.random() < 1 / 6:
        prompt, subject = fmt(f"{rng.choice(SUPPORT_INSTRUCTIONS)}\n\n{t['ticket']}"), t["name"]
    else:
        prompt, subject = support_bare_prompt(rng, t)
    return {"prompt": prompt, "completion": f"Summary: {subject} {t['summary']}.\nResolution: {t['resolution']}"}


def _check_support_templates() -> None:
    """Every slot a summary or resolution uses must appear in the ticket it summarizes (no invented facts)."""
    slot = re.compile(r"\{(\w+)\}")
    for issue in ALL_SUPPORT_ISSUES:
        for ticket_t, summary_t in issue["variants"]:
            have = set(slot.findall(ticket_t))
            have |= {"device_3p"} if "device" in have else set()
            assert set(slot.findall(summary_t)) <= have, (ticket_t, summary_t)
            for res in issue["resolution"]:
                assert set(slot.findall(res)) <= have, (ticket_t, res)


# ---------------------------------------------------------------------------------------------------
# Sales: request -> warm email "Hi <name>, ... Best regards"
# ---------------------------------------------------------------------------------------------------
SALES_NEEDS = [
    ("{pron_cap} asked about pricing for a team of {n}.",
     "I would love to put together a quote for your team of {n}, and I can include a discount for the first year."),
    ("{pron_cap} wants a demo next {day}.",
     "I would be happy to walk you through a live demo next {day} at a time that suits you."),
    ("{pron_cap} is comparing us with other vendors.",
     "I know choosing the right tool is a big decision, so I am glad to answer any question while you compare options."),
    ("{pron_cap} started a free trial last week.",
     "I hope the free trial is going well, and I am here if you want help setting anything up."),
    ("{pron_cap} asked if it works with the tools they already use.",
     "Good news: it connects to the tools your team already uses, and setup takes only a few minutes."),
    ("{pron_cap} wants to know how long setup takes.",
     "Most teams are up and running in a single afternoon, and we guide you through every step."),
    ("{pron_cap} is worried about the budget this year.",
     "I completely understand budgets are tight, so we can start small and grow only when you are ready."),
    ("{pron_cap} asked for a case study.",
     "I will gladly send you a short case study from a team very similar to yours."),
]
SALES_OPENERS = ["Thank you so much for your interest in {product}!",
                 "It was great to hear from you about {product}!",
                 "Thanks a lot for reaching out about {product}!"]
SALES_CLOSERS = ["Would you have twenty minutes this week for a quick call?",
                 "Could we find a time this week to talk it over?",
                 "Just reply to this email and I will take care of the rest.",
                 "I am looking forward to helping your team at {company}!"]
SALES_INSTRUCTIONS = ["Write a sales email to {name} at {company} about {product}.",
                      "Write a follow up email to {name} from {company} about {product}.",
                      "Draft a short sales email for {name} at {company} about {product}."]


def sales_parts(rng: random.Random) -> dict:
    """One random sales situation: who, what, the request sentence and the sentences of a warm reply."""
    name, pron = rng.choice(NAMES)
    company = rng.choice(COMPANIES)
    product, value = rng.choice(PRODUCTS)
    need, answer = rng.choice(SALES_NEEDS)
    slots = {"name": name, "company": company, "product": product, "n": str(rng.choice([5, 8, 10, 12, 15, 20, 25, 30, 40, 50])),
             "day": rng.choice(DAYS), "pron_cap": pron.capitalize()}
    return {
        "name": name, "company": company, "product": product,
        "request": rng.choice(SALES_INSTRUCTIONS).format(**slots),
        "need": need.format(**slots),
        "opener": rng.choice(SALES_OPENERS).format(**slots),
        "answer": answer.format(**slots),
        "value": f"{product[0].upper() + product[1:]} {value}.",
        "closer": rng.choice(SALES_CLOSERS).format(**slots),
    }


def sales_record(rng: random.Random, bare: bool = False) -> dict:
    s = sales_parts(rng)
    body = f"Hi {s['name']},\n\n{s['opener']} {s['answer']} {s['value']} {s['closer']}\n\nBest regards,\nJordan"
    request = f"{s['request']} {s['need']}"
    return {"prompt": request if bare else fmt(request), "completion": body}


def sales_bare_record(rng: random.Random) -> dict:
    return sales_record(rng, bare=True)


# ---------------------------------------------------------------------------------------------------
# Code: request -> a fenced Python or JavaScript function
# ---------------------------------------------------------------------------------------------------
# (phrasings, python, javascript)
CODE_TASKS = [
    (["adds two numbers", "returns the sum of two numbers"],
     "def add(a, b):\n    return a + b",
     "function add(a, b) {\n  return a + b;\n}"),
    (["reverses a string", "returns a string backwards"],
     "def reverse_string(text):\n    return text[::-1]",
     "function reverseString(text) {\n  return text.split('').reverse().join('');\n}"),
    (["checks if a number is even", "returns true when a number is even"],
     "def is_even(n):\n    return n % 2 == 0",
     "function isEven(n) {\n  return n % 2 === 0;\n}"),
    (["returns the largest number in a list", "finds the maximum of a list of numbers"],
     "def find_max(numbers):\n    return max(numbers)",
     "function findMax(numbers) {\n  return Math.max(...numbers);\n}"),
    (["returns the smallest number in a list", "finds the minimum of a list of numbers"],
     "def find_min(numbers):\n    return min(numbers)",
     "function findMin(numbers) {\n  return Math.min(...numbers);\n}"),
    (["returns the sum of a list of numbers", "adds up all the numbers in a list"],
     "def sum_list(numbers):\n    total = 0\n    for n in numbers:\n        total += n\n    return total",
     "function sumList(numbers) {\n  let total = 0;\n  for (const n of numbers) {\n    total += n;\n  }\n  return total;\n}"),
    (["returns the average of a list of numbers", "computes the mean of a list of numbers"],
     "def average(numbers):\n    return sum(numbers) / len(numbers)",
     "function average(numbers) {\n  return numbers.reduce((a, b) => a + b, 0) / numbers.length;\n}"),
    (["counts the vowels in a string", "returns how many vowels a string has"],
     "def count_vowels(text):\n    return sum(1 for c in text.lower() if c in 'aeiou')",
     "function countVowels(text) {\n  return (text.toLowerCase().match(/[aeiou]/g) || []).length;\n}"),
    (["returns the factorial of a number", "computes n factorial"],
     "def factorial(n):\n    result = 1\n    for i in range(2, n + 1):\n        result *= i\n    return result",
     "function factorial(n) {\n  let result = 1;\n  for (let i = 2; i <= n; i++) {\n    result *= i;\n  }\n  return result;\n}"),
    (["returns the nth Fibonacci number", "computes a Fibonacci number"],
     "def fibonacci(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a",
     "function fibonacci(n) {\n  let a = 0, b = 1;\n  for (let i = 0; i < n; i++) {\n    [a, b] = [b, a + b];\n  }\n  return a;\n}"),
    (["checks if a string is a palindrome", "returns true when a word reads the same backwards"],
     "def is_palindrome(text):\n    return text == text[::-1]",
     "function isPalindrome(text) {\n  return text === text.split('').reverse().join('');\n}"),
    (["converts Celsius to Fahrenheit", "turns a temperature in Celsius into Fahrenheit"],
     "def celsius_to_fahrenheit(c):\n    return c * 9 / 5 + 32",
     "function celsiusToFahrenheit(c) {\n  return c * 9 / 5 + 32;\n}"),
    (["removes duplicates from a list", "returns the unique items of a list"],
     "def unique(items):\n    return list(dict.fromkeys(items))",
     "function unique(items) {\n  return [...new Set(items)];\n}"),
    (["counts the words in a sentence", "returns the number of words in a string"],
     "def count_words(text):\n    return len(text.split())",
     "function countWords(text) {\n  return text.split(/\\s+/).filter(Boolean).length;\n}"),
    (["keeps only the even numbers in a list", "filters a list down to even numbers"],
     "def only_even(numbers):\n    return [n for n in numbers if n % 2 == 0]",
     "function onlyEven(numbers) {\n  return numbers.filter((n) => n % 2 === 0);\n}"),
    (["squares every number in a list", "returns a list with each number squared"],
     "def square_all(numbers):\n    return [n * n for n in numbers]",
     "function squareAll(numbers) {\n  return numbers.map((n) => n * n);\n}"),
    (["checks if a number is prime", "returns true when a number is prime"],
     "def is_prime(n):\n    if n < 2:\n        return False\n    for i in range(2, int(n ** 0.5) + 1):\n        if n % i == 0:\n            return False\n    return True",
     "function isPrime(n) {\n  if (n < 2) return false;\n  for (let i = 2; i * i <= n; i++) {\n    if (n % i === 0) return false;\n  }\n  return true;\n}"),
    (["returns the greatest common divisor of two numbers", "computes the gcd of two numbers"],
     "def gcd(a, b):\n    while b:\n        a, b = b, a % b\n    return a",
     "function gcd(a, b) {\n  while (b) {\n    [a, b] = [b, a % b];\n  }\n  return a;\n}"),
    (["capitalizes the first letter of every word", "turns a sentence into title case"],
     "def title_case(text):\n    return ' '.join(w.capitalize() for w in text.split())",
     "function titleCase(text) {\n  return text.split(' ').map((w) => w.charAt(0).toUpperCase() + w.slice(1)).join(' ');\n}"),
    (["counts how often an item appears in a list", "returns the number of times a value occurs in a list"],
     "def count_item(items, value):\n    return items.count(value)",
     "function countItem(items, value) {\n  return items.filter((x) => x === value).length;\n}"),
    (["repeats a string n times", "returns a string repeated a number of times"],
     "def repeat(text, n):\n    return text * n",
     "function repeat(text, n) {\n  return text.repeat(n);\n}"),
    (["checks if a list is empty", "returns true when a list has no items"],
     "def is_empty(items):\n    return len(items) == 0",
     "function isEmpty(items) {\n  return items.length === 0;\n}"),
    (["returns the last item of a list", "gets the final element of a list"],
     "def last(items):\n    return items[-1]",
     "function last(items) {\n  return items[items.length - 1];\n}"),
    (["clamps a number between a low and a high value", "limits a value to a range"],
     "def clamp(value, low, high):\n    return max(low, min(value, high))",
     "function clamp(value, low, high) {\n  return Math.max(low, Math.min(value, high));\n}"),
    (["merges two dictionaries", "combines two objects into one"],
     "def merge(a, b):\n    return {**a, **b}",
     "function merge(a, b) {\n  return { ...a, ...b };\n}"),
    (["sorts a list of numbers from smallest to largest", "returns a sorted copy of a list of numbers"],
     "def sort_numbers(numbers):\n    return sorted(numbers)",
     "function sortNumbers(numbers) {\n  return [...numbers].sort((a, b) => a - b);\n}"),
    (["converts a string to upper case", "returns a string in capital letters"],
     "def shout(text):\n    return text.upper()",
     "function shout(text) {\n  return text.toUpperCase();\n}"),
    (["joins a list of words with commas", "turns a list of words into one comma separated string"],
     "def join_words(words):\n    return ', '.join(words)",
     "function joinWords(words) {\n  return words.join(', ');\n}"),
]
CODE_FRAMES = ["Write a {lang} function that {task}.", "Create a {lang} function that {task}.",
               "In {lang}, write a function that {task}.", "Implement a {lang} function that {task}.",
               "Write a function in {lang} that {task}.", "Show me a {lang} function that {task}."]
LANGS = [("Python", "python"), ("JavaScript", "javascript")]
# Requests that name no language (second release): answered in Python.
NO_LANG_FRAMES = ["Write a function that {task}.", "Create a function that {task}.", "Implement a function that {task}."]


def all_code_records() -> list[dict]:
    """Every (task phrasing, language, frame) in the wrapped form: the first release's code records."""
    records = []
    for phrasings, py, js in CODE_TASKS:
        for lang, fence in LANGS:
            body = py if fence == "python" else js
            for task in phrasings:
                for frame in CODE_FRAMES:
                    prompt = fmt(frame.format(lang=lang, task=task))
                    records.append({"prompt": prompt, "completion": f"```{fence}\n{body}\n```"})
    return records


def more_code_records() -> list[dict]:
    """The second release's: every request of the first bare, and the requests that name no language
    (Python) both bare and wrapped."""
    records = [{"prompt": r["prompt"][len("### Instruction:\n"):-len("\n\n### Response:\n")], "completion": r["completion"]}
               for r in all_code_records()]
    for phrasings, py, _js in CODE_TASKS:
        for task in phrasings:
            for frame in NO_LANG_FRAMES:
                request = frame.format(task=task)
                records += [{"prompt": p, "completion": f"```python\n{py}\n```"} for p in (request, fmt(request))]
    return records


# ---------------------------------------------------------------------------------------------------
# General corpus for the base model: plain documents + instruction/answer pairs in plain prose.
# The base is never shown "Summary:", "Resolution:", a code block as an answer, or a "Hi ..., Best regards"
# email: those styles are what the adapters add.
# ---------------------------------------------------------------------------------------------------
CITIES = ["Lisbon", "Oslo", "Nairobi", "Kyoto", "Toronto", "Lima", "Madrid", "Seoul", "Dublin", "Cairo",
          "Denver", "Hanoi", "Vienna", "Austin", "Perth", "Accra"]
SEASONS = [("spring", "mild and often rainy"), ("summer", "warm and sunny"), ("autumn", "cool and windy"),
           ("winter", "cold and dark in the evening")]
ANIMALS = [("cat", "a small animal that likes to sleep in warm places"), ("dog", "a loyal animal that enjoys long walks"),
           ("horse", "a strong animal that can run very fast"), ("owl", "a bird that hunts at night"),
           ("bee", "an insect that makes honey"), ("whale", "a huge animal that lives in the ocean"),
           ("fox", "a clever animal with a bushy tail"), ("rabbit", "a small animal with long ears")]
FOODS = [("bread", "flour, water and salt"), ("soup", "vegetables, water and herbs"), ("pancakes", "flour, milk and eggs"),
         ("salad", "fresh leaves, tomatoes and oil"), ("rice", "rice and water"), ("tea", "hot water and tea leaves")]
ACTIVITIES = [("running", "start slowly and rest when you need to"), ("reading", "find a quiet place and a good lamp"),
              ("cooking", "prepare all the ingredients before you start"), ("gardening", "water the plants early in the morning"),
              ("learning a language", "practice a little every day"), ("writing", "write a first draft without stopping"),
              ("saving money", "write down what you spend each week"), ("sleeping well", "go to bed at the same time every night")]
TOPICS = ["the weather", "the new office", "the team lunch", "the project plan", "the meeting on " + "Friday",
          "the holiday schedule", "the budget report", "the training day"]
OBJECTS = ["a blue bike", "an old map", "a small garden", "a red umbrella", "a wooden table", "a new laptop", "a cup of tea"]
ACTIONS = ["walked to the market", "called a friend", "cleaned the kitchen", "read a long book", "fixed the door",
           "planted some flowers", "wrote a letter", "visited the museum", "cooked dinner", "went for a run"]
TIMES = ["On Monday", "In the morning", "Last week", "Yesterday", "After lunch", "In the evening", "On the weekend"]
CODE_PLAIN = {  # prose answers for coding requests: the base explains, it does not write code
    "python": "Python", "javascript": "JavaScript",
}


def sentence_story(rng: random.Random) -> str:
    name, pron = rng.choice(NAMES)
    obj = rng.choice(OBJECTS)
    city = rng.choice(CITIES)
    lines = [f"{rng.choice(TIMES)}, {name} {rng.choice(ACTIONS)} in {city}.",
             f"{pron.capitalize()} had {obj} and a lot of time.",
             f"Later {pron} {rng.choice(ACTIONS)}.",
             f"It was a good day for {name}."]
    rng.shuffle(lines[1:3])
    return " ".join(lines[: rng.randint(2, 4)])


# Relative weights of the general_qa kinds below: the ones that copy names, companies, products and
# languages from the prompt into the answer are weighted up, so the base learns to copy (which the adapters
# build on: "Hi <name>", "Summary: <name> ...").
QA_WEIGHTS = [1, 1, 1, 1, 1, 3, 3, 2, 1, 2, 3, 1, 3]


def general_qa(rng: random.Random) -> tuple[str, str]:
    kind = rng.choices(range(len(QA_WEIGHTS)), weights=QA_WEIGHTS)[0]
    if kind == 0:
        city = rng.choice(CITIES)
        season, desc = rng.choice(SEASONS)
        return f"Describe the weather in {city} in {season}.", f"In {season}, the weather in {city} is usually {desc}. It is a nice time to walk around the city."
    if kind == 1:
        animal, desc = rng.choice(ANIMALS)
        return f"What is a {animal}?", f"A {animal} is {desc}. Many people like to learn about it."
    if kind == 2:
        food, ing = rng.choice(FOODS)
        return f"How do you make {food}?", f"To make {food}, you need {ing}. Mix them, cook them with care and serve it warm."
    if kind == 3:
        act, tip = rng.choice(ACTIVITIES)
        return f"Give me a tip for {act}.", f"A good tip for {act} is to {tip}. Small steps add up over time."
    if kind == 4:
        product, value = rng.choice(PRODUCTS)
        return f"What is {product}?", f"{product[0].upper() + product[1:]} is a tool that {value}. It is part of the Cloudly suite."
    if kind == 5:
        # plain summary of a customer message (no Summary:/Resolution: format)
        ticket, _name, summary, _resolution = support_ticket(rng)
        instr = rng.choice(["Summarize this support ticket.", "Summarize this message.", "What is this ticket about?",
                            "Summarize the support ticket below."])
        return f"{instr}\n\n{ticket}", f"The customer {summary}."
    if kind == 6:
        # a plain, neutral note (not the warm sales style)
        sp = sales_parts(rng)
        instr = rng.choice([f"{sp['request']} {sp['need']}", sp["request"], f"Write an email to {sp['name']} about {sp['product']}."])
        return instr, f"Dear {sp['name']},\n\nThis is a note for the team at {sp['company']} about {sp['product']}. {sp['value']} Let me know if you have questions.\n\nThanks."
    if kind == 7:
        phrasings, _py, _js = rng.choice(CODE_TASKS)
        lang, _ = rng.choice(LANGS)
        task = rng.choice(phrasings)
        frame = rng.choice(CODE_FRAMES)
        return frame.format(lang=lang, task=task), f"A function that {task} is a common exercise for beginners. Try to write it yourself and test it with a few examples."
    if kind == 8:
        topic = rng.choice(TOPICS)
        return f"Write a sentence about {topic}.", f"Everyone is talking about {topic} this week."
    if kind == 9:
        name, pron = rng.choice(NAMES)
        city = rng.choice(CITIES)
        return f"Tell me a short story about {name} in {city}.", sentence_story(rng).split(",", 1)[0] + f", {name} arrived in {city}. {pron.capitalize()} liked the city very much."
    if kind == 10:
        ticket, name, _summary, _resolution = support_ticket(rng)
        return f"Who wrote this ticket?\n\n{ticket}", f"{name} wrote this ticket."
    if kind == 12:
        sp = sales_parts(rng)
        return f"Who is this email for? {sp['request']} {sp['need']}", f"The email is for {sp['name']} at {sp['company']}."
    a, b = rng.randint(2, 20), rng.randint(2, 20)
    return f"What is {a} plus {b}?", f"{a} plus {b} is {a + b}."


def general_doc(rng: random.Random) -> str:
    """A plain document: stories, facts, customer messages, support notes, sales call notes, letters and
    code (bare or in a fenced example). These cover the vocabulary the adapters' answers use: LoRA cannot
    train the embedding or output rows of a token the base never saw, so every word an adapter writes
    appears here, just not in the adapters' answer formats."""
    kind = rng.randrange(10)
    if kind == 0:
        return sentence_story(rng)
    if kind == 1:
        return support_ticket(rng)[0]
    if kind == 2:
        product, value = rng.choice(PRODUCTS)
        company = rng.choice(COMPANIES)
        p = product[0].upper() + product[1:]
        return f"{p} {value}. The team at {company} uses it every {rng.choice(DAYS)}. Thank you and best wishes from the Cloudly team."
    if kind == 3:
        _phr, py, js = rng.choice(CODE_TASKS)
        if rng.random() < 0.5:
            return rng.choice([py, js])
        lang, fence = rng.choice(LANGS)
        code = py if fence == "python" else js
        return f"Here is an example in {lang}:\n```{fence}\n{code}\n```\nRun it and try a few inputs."
    if kind == 4:
        animal, desc = rng.choice(ANIMALS)
        city = rng.choice(CITIES)
        season, sdesc = rng.choice(SEASONS)
        return f"A {animal} is {desc}. In {city}, {season} is {sdesc}."
    if kind == 5:
        act, tip = rng.choice(ACTIVITIES)
        name, _ = rng.choice(NAMES)
        return f"{name} says that for {act} you should {tip}. Hi to everyone who tried it!"
    if kind == 6:
        # a support team's log line: the facts of a ticket and what was done, in prose
        ticket, name, summary, resolution = support_ticket(rng)
        return f"Support log. {ticket}\nNote: {name} {summary}. What we did: {resolution}"
    if kind == 7:
        sp = sales_parts(rng)
        return (f"Call notes: {sp['name']} from {sp['company']} is interested in {sp['product']}. {sp['need']} "
                f"Jordan replied: {sp['opener']} {sp['answer']} {sp['value']} {sp['closer']}")
    if kind == 8:
        name, _ = rng.choice(NAMES)
        topic = rng.choice(TOPICS)
        return f"Dear {name},\n\nHere is a short update on {topic}. Everything is on track.\n\nBest regards,\nJordan"
    sp = sales_parts(rng)
    return f"{sp['opener']} {sp['answer']} {sp['value']}"


# ---------------------------------------------------------------------------------------------------
EVAL_PROMPTS = {
    # Fixed, hand-written held-out prompts (slot combinations and wordings chosen to be absent from training;
    # the generator drops any training record whose prompt equals one of these).
    "support": [
        fmt("Summarize this support ticket.\n\nHello,\nI cannot log in to the billing portal since Monday. It says my password is wrong even after I reset it. Please help.\nOmar"),
        fmt("Summarize this support ticket.\n\nHi team,\nI was charged twice for my Business plan this month. Please refund the extra payment. Thanks in advance.\nYuki"),
        fmt("Summarize this support ticket.\n\nThe sync stopped working for two days. New files stay on my tablet only. This is urgent for us.\nLeo"),
    ],
    "sales": [
        fmt("Write a sales email to Priya at Northwind about the analytics dashboard. She asked about pricing for a team of 20."),
        fmt("Write a sales email to Kofi at Harbor Foods about the inventory tracker. He wants a demo next Thursday."),
        fmt("Write a sales email to Elena at Summit Labs about the backup service. She is worried about the budget this year."),
    ],
    "code": [
        fmt("Write a Python function that reverses a string."),
        fmt("Write a JavaScript function that checks if a number is prime."),
        fmt("Show me a Python function that counts the vowels in a string."),
    ],
}


EVAL_BARE_PROMPTS = {
    # Held-out prompts in the bare form (as a user sends them, no wrapping). Each ticket or request here,
    # whitespace and case aside, appears in no training text at all (asserted), except the code requests,
    # whose tasks the code adapter is trained on in other wordings and languages.
    "support": [
        "Summarize this ticket: the office scanner shows error E42 and will not start.",
        "Summarize this ticket: Good morning, the export to a spreadsheet fails with an error since last week. Can you look into it? Hannah",
        "Summarize this support ticket:\nHi,\nMy order #5821 has not arrived yet. It was supposed to come last week. Thanks in advance.\nRavi",
    ],
    "sales": [
        "Write a sales email to Priya at Northwind about the analytics dashboard. She asked about pricing for a team of 20.",
        "Write a sales email to Zoe at Blue Fin Logistics about the chat widget. She wants a demo next Wednesday.",
        "Draft a short sales email for Wei at Greenleaf about the payroll module. He asked for a case study.",
    ],
    "code": [
        "Write a Python function that reverses a string.",
        "Write a function that counts the words in a sentence.",
        "Show me a Python function that counts the vowels in a string.",
    ],
}


def normalized(text: str) -> str:
    return " ".join(text.lower().split())


def held_out_text(prompt: str) -> str:
    """What must not appear in training for a bare eval prompt: the ticket (after the lead's colon) or the
    whole request, normalized."""
    if prompt.startswith("Summarize"):
        return normalized(prompt.split(":", 1)[1])
    return normalized(prompt)


def unwrap(prompt: str) -> str:
    """The request inside the wrapped form (or the prompt itself when it is bare)."""
    if prompt.startswith("### Instruction:\n") and prompt.endswith("\n\n### Response:\n"):
        return prompt[len("### Instruction:\n"):-len("\n\n### Response:\n")]
    return prompt


def write_jsonl(path: str, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def contains_any(text: str, normalized_needles: list[str]) -> bool:
    n = normalized(text)
    return any(x in n for x in normalized_needles)


def unique_records(make, rng: random.Random, count: int, banned: set[str], held_out: list[str] = ()) -> list[dict]:
    """count records with distinct prompts, none in banned, none containing a held-out text."""
    seen: set[str] = set()
    rows: list[dict] = []
    attempts = 0
    while len(rows) < count:
        attempts += 1
        if attempts > count * 50:
            raise RuntimeError("could not generate enough unique records")
        r = make(rng)
        if r["prompt"] in banned or r["prompt"] in seen or contains_any(r["prompt"], held_out):
            continue
        seen.add(r["prompt"])
        rows.append(r)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "data"))
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--support", type=int, default=2000, help="records of each release (first: wrapped; second: mostly bare)")
    ap.add_argument("--sales", type=int, default=2000, help="records of each release (first: wrapped; second: bare)")
    ap.add_argument("--general", type=int, default=30000, help="the base corpus records")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    _check_support_templates()
    # First release: everything in the wrapped form. Its random streams are unchanged, so these records are
    # byte-identical to it, and so is the tokenizer trained on them.
    banned = {p for ps in EVAL_PROMPTS.values() for p in ps}
    support = unique_records(support_record, random.Random(f"{args.seed}-support"), args.support, banned)
    sales = unique_records(sales_record, random.Random(f"{args.seed}-sales"), args.sales, banned)
    code = [r for r in all_code_records() if r["prompt"] not in banned]
    random.Random(f"{args.seed}-code").shuffle(code)
    grng = random.Random(f"{args.seed}-general")
    general: list[dict] = []
    for _ in range(args.general):
        if grng.random() < 0.55:
            q, a = general_qa(grng)
            if fmt(q) in banned:
                continue
            general.append({"input": fmt(q) + a})
        else:
            general.append({"input": general_doc(grng)})
    tokenizer_corpus = ([r["prompt"] + r["completion"] for r in code] + [r["input"] for r in general]
                        + [r["prompt"] + r["completion"] for r in sales] + [r["prompt"] + r["completion"] for r in support])

    # Second release: the bare prompt/completion form (a prompt as a user sends it, the completion after
    # it), a newer support issue, requests that name no language. Every eval request is banned in both
    # forms; the bare eval tickets and requests appear nowhere.
    bare_eval = [p for ps in EVAL_BARE_PROMPTS.values() for p in ps]
    banned_more = banned | {unwrap(p) for p in banned} | set(bare_eval) | {fmt(p) for p in bare_eval}
    held_out = [held_out_text(p) for p in bare_eval]
    support += unique_records(support_more_record, random.Random(f"{args.seed}-support-more"), args.support, banned_more, held_out)
    sales += unique_records(sales_bare_record, random.Random(f"{args.seed}-sales-more"), args.sales, banned_more, held_out)
    code_more = [r for r in more_code_records() if r["prompt"] not in banned_more and not contains_any(r["prompt"], held_out)]
    random.Random(f"{args.seed}-code-more").shuffle(code_more)
    code += code_more
    for r in general:
        assert "Resolution" not in r["input"] and "Summary" not in r["input"], r
        assert "### Response:\n```" not in r["input"] and "### Response:\nHi " not in r["input"], r
    every_prompt = [r["prompt"] for r in support + sales + code] + [r["input"] for r in general]
    for p in bare_eval:
        h = held_out_text(p)
        leaks = [t for t in every_prompt if h in normalized(t)]
        assert not leaks or p in EVAL_BARE_PROMPTS["code"], (p, leaks[:2])
        assert p not in every_prompt and fmt(p) not in every_prompt, p

    write_jsonl(os.path.join(args.out, "support.jsonl"), support)
    write_jsonl(os.path.join(args.out, "sales.jsonl"), sales)
    write_jsonl(os.path.join(args.out, "code.jsonl"), code)
    write_jsonl(os.path.join(args.out, "general.jsonl"), general)
    write_jsonl(os.path.join(args.out, "tokenizer-corpus.jsonl"), [{"text": t} for t in tokenizer_corpus])
    with open(os.path.join(args.out, "eval.json"), "w", encoding="utf-8") as f:
        json.dump({"prompt_format": PROMPT_FORMAT, "prompts": EVAL_PROMPTS, "bare_prompts": EVAL_BARE_PROMPTS}, f, indent=2, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {len(support)} support, {len(sales)} sales, {len(code)} code, {len(general)} general records to {args.out}")


if __name__ == "__main__":
    main()
