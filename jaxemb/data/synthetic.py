"""A deterministic synthetic clinical-note corpus for the quick start (no data files, pure Python templates).

~3,000 notes of 55-150 words (median 95; ~200 MiniLM tokens, 95% under 250) in 5 note types (progress note,
consult, discharge summary, clinic note, procedure note), labelled with the service that wrote them (`specialty`:
8 classes, balanced), about ~1,000 synthetic patients (`group`; a patient keeps age, sex and comorbidities and
mostly sees one service). It is built so that no single word gives the label and a reader has more to go on than
a bag of words:
- a note is about one of 31 presenting problems, most written about by two or three services (heart failure:
  cardiology or nephrology; back pain: orthopedics, neurology or oncology). The service shows in its habits in the
  plan (daily weights, neuro checks, renally dosed meds; half of them shared by two services; half the plans also
  carry one of another service's) and in which findings co-occur;
- every note lists comorbidities, home medicines and denied symptoms of any specialty ("Denies CP, SOB & N/V"):
  that a word is there says little, whether it is reported or denied says more;
- labs and vitals: a basic panel whose names are no clue; the problem and the service's patients move values out
  of range (Cr 4.2 for nephrology, WBC 1.8 for oncology), mostly as decimals a word tokenizer drops;
- shorthand: each concept is written abbreviated or expanded (SOB / shortness of breath, Lasix / furosemide,
  TKA / total knee arthroplasty) by the note's writer (terse, dictated or mixed), and mixed writers define some
  on first use ("atrial fibrillation (AFib)"): pairs an encoder can learn from the unlabelled text. Some letters
  mean different things by context (HD: hemodialysis / hospital day; PD, MS, RA, PT, Ca);
- a note never names its own service; it may name another ("appreciate cards recs").

Measured on specialty (3,000 notes, seeds 0/1/2, test split by patient, 535-682 notes): TF-IDF word 1-2-grams
+ logistic regression (C chosen on a validation part of train) macro-F1 0.744 / 0.731 / 0.740; the same with
out-of-range flags parsed from the lab values 0.800 / 0.779 / 0.774 (what the numbers add). `eval.py` on the
default corpus (seed 0; 2 seeds): base all-MiniLM-L6-v2 frozen probe 0.506 with all labels, 0.364 with 16 per
class; its TF-IDF row 0.717 and 0.453. note_type is easy (TF-IDF 1.00): it is the metadata for the
geometry report, not a task. The best single-word indicator of a class (tests/test_data_synthetic.py) reaches a
mean F1 of 0.38 over the classes, against 0.73 for version 1 of this corpus (one vocabulary per specialty, on
which TF-IDF scored 0.94 and the base probe 0.945).
Fields: id, text, note_type, specialty, group (patient id), split (train/test by patient).

  python -m jaxemb.data.synthetic OUT.jsonl.gz [--notes 3000] [--seed 0]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import random
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from jaxemb.data import default_cache_dir

# The cache key of `quickstart_corpus_path`: bump on any change to the generated text.
GENERATOR_VERSION = 3

# The labels (field `specialty`): the service that wrote the note.
SPECIALTIES = ("cardiology", "pulmonology", "nephrology", "gastroenterology", "neurology", "orthopedics", "oncology",
               "endocrinology")

# Concepts: (abbreviations, expansions). A note writes each mention as one of them, at its own abbreviation
# rate, and sometimes defines it on first mention ("atrial fibrillation (AFib)"): the pairing is learnable
# from the unlabelled text, while a bag of words sees unrelated tokens.
CONCEPTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
  # symptoms
  "cp": (("CP",), ("chest pain", "chest pressure")),
  "sob": (("SOB",), ("shortness of breath", "dyspnea")),
  "doe": (("DOE",), ("dyspnea on exertion",)),
  "orthopnea": (("2-pillow orthopnea",), ("orthopnea",)),
  "pnd": (("PND",), ("paroxysmal nocturnal dyspnea",)),
  "palp": (("palps",), ("palpitations",)),
  "syncope": (("syncopal episode",), ("syncope", "a brief loss of consciousness")),
  "le_edema": (("BLE edema", "LE edema"), ("bilateral leg swelling", "lower extremity edema")),
  "cough": (("cough w/ sputum",), ("cough", "productive cough")),
  "wheeze": ((), ("wheezing",)),
  "fever": (("fevers", "f/c"), ("fevers", "fevers and chills")),
  "nv": (("N/V",), ("nausea and vomiting", "nausea")),
  "abd_pain": (("abd pain", "RUQ pain", "epigastric pain"), ("abdominal pain", "upper abdominal pain")),
  "melena": (("melena",), ("black tarry stools",)),
  "brbpr": (("BRBPR",), ("bright red blood per rectum",)),
  "diarrhea": (("loose BMs",), ("diarrhea", "loose stools")),
  "ha": (("HA",), ("headache", "headaches")),
  "dizzy": (("LH",), ("dizziness", "lightheadedness")),
  "weakness": (("gen weakness",), ("weakness", "generalized weakness")),
  "focal_weak": (("R-sided weakness", "L-sided weakness"), ("weakness of the right arm", "left leg weakness")),
  "numbness": (("paresthesias",), ("numbness", "numbness and tingling")),
  "back_pain": (("LBP",), ("low back pain", "back pain")),
  "knee_pain": (("R knee pain", "L knee pain"), ("right knee pain", "left knee pain")),
  "hip_pain": (("R hip pain", "L hip pain"), ("hip pain", "groin pain")),
  "wt_loss": (("wt loss",), ("weight loss", "unintentional weight loss")),
  "night_sweats": (("NS",), ("night sweats",)),
  "fatigue": (("fatigue",), ("fatigue", "tiredness")),
  "polyuria": (("polyuria/polydipsia",), ("frequent urination", "excessive thirst")),
  "dec_uop": (("decr UOP",), ("decreased urine output",)),
  "confusion": (("AMS",), ("altered mental status", "confusion")),
  "vision": (("blurry vision",), ("vision changes",)),
  "bone_pain": ((), ("bone pain", "diffuse aches")),
  "tremor": ((), ("tremor", "shakiness")),
  "pruritus": ((), ("itching", "pruritus")),
  "hematemesis": (("CG emesis",), ("coffee-ground emesis", "hematemesis")),
  # conditions (problem lists, assessments)
  "htn": (("HTN",), ("hypertension",)),
  "dm2": (("DM2", "T2DM"), ("type 2 diabetes", "diabetes mellitus type 2")),
  "hld": (("HLD",), ("hyperlipidemia",)),
  "cad": (("CAD",), ("coronary artery disease",)),
  "chf": (("CHF", "HFrEF"), ("congestive heart failure", "heart failure with reduced EF")),
  "afib": (("AFib", "AF"), ("atrial fibrillation",)),
  "nstemi": (("NSTEMI",), ("non-ST elevation myocardial infarction",)),
  "acs": (("ACS",), ("acute coronary syndrome",)),
  "as": (("AS",), ("aortic stenosis",)),
  "mitral": (("MS", "MR"), ("mitral stenosis", "mitral regurgitation")),
  "copd": (("COPD",), ("chronic obstructive pulmonary disease", "emphysema")),
  "osa": (("OSA",), ("obstructive sleep apnea",)),
  "pna": (("PNA", "CAP"), ("pneumonia", "community-acquired pneumonia")),
  "pe": (("PE",), ("pulmonary embolism",)),
  "dvt": (("DVT",), ("deep vein thrombosis",)),
  "effusion": (("pleural eff",), ("pleural effusion",)),
  "ild": (("ILD",), ("interstitial lung disease",)),
  "ckd": (("CKD 3b", "CKD 4"), ("chronic kidney disease stage 3b", "chronic kidney disease stage 4")),
  "aki": (("AKI",), ("acute kidney injury",)),
  "esrd": (("ESRD on HD", "ESRD"), ("end-stage renal disease on hemodialysis",)),
  "nephrotic": ((), ("nephrotic syndrome", "nephrotic-range proteinuria")),
  "hyperk": (("hyperK",), ("hyperkalemia",)),
  "hypona": (("hypoNa",), ("hyponatremia",)),
  "gerd": (("GERD",), ("gastroesophageal reflux disease", "acid reflux")),
  "gib": (("UGIB", "GIB"), ("upper GI bleed", "gastrointestinal bleeding")),
  "cirrhosis": (("EtOH cirrhosis", "NASH cirrhosis"), ("alcoholic cirrhosis", "cirrhosis")),
  "ibd": (("UC", "IBD"), ("ulcerative colitis", "inflammatory bowel disease")),
  "pancreatitis": (("panc",), ("acute pancreatitis",)),
  "pud": (("PUD",), ("peptic ulcer disease",)),
  "cva": (("CVA", "L MCA stroke"), ("ischemic stroke", "cerebrovascular accident")),
  "tia": (("TIA",), ("transient ischemic attack",)),
  "seizure": (("sz", "GTC sz"), ("seizure", "generalized tonic-clonic seizure")),
  "epilepsy": (("sz d/o",), ("epilepsy", "seizure disorder")),
  "migraine": (("migraine w/ aura",), ("migraine", "migraine headaches")),
  "ms": (("MS",), ("multiple sclerosis",)),
  "parkinson": (("PD",), ("Parkinson disease",)),
  "neuropathy": (("periph neuropathy",), ("peripheral neuropathy",)),
  "oa": (("OA", "DJD"), ("osteoarthritis", "degenerative joint disease")),
  "ra": (("RA",), ("rheumatoid arthritis",)),
  "tka": (("TKA",), ("total knee arthroplasty", "total knee replacement")),
  "tha": (("THA",), ("total hip arthroplasty",)),
  "hip_fx": (("hip fx", "FNF"), ("hip fracture", "femoral neck fracture")),
  "radic": (("L5 radic",), ("lumbar radiculopathy", "sciatica")),
  "stenosis": (("LSS",), ("lumbar spinal stenosis",)),
  "breast_ca": (("breast ca", "IDC"), ("breast cancer", "invasive ductal carcinoma")),
  "lung_ca": (("NSCLC",), ("non-small cell lung cancer", "lung adenocarcinoma")),
  "colon_ca": (("CRC", "colon ca"), ("colon cancer", "colorectal adenocarcinoma")),
  "lymphoma": (("DLBCL",), ("diffuse large B-cell lymphoma", "lymphoma")),
  "mets": (("mets",), ("metastatic disease", "metastases")),
  "fn": (("FN",), ("neutropenic fever", "febrile neutropenia")),
  "dka": (("DKA",), ("diabetic ketoacidosis",)),
  "hypothyroid": (("hypothyroid",), ("hypothyroidism",)),
  "hyperthyroid": (("Graves",), ("hyperthyroidism", "Graves disease")),
  "adrenal": (("AI",), ("adrenal insufficiency",)),
  "hypercalcemia": (("hyperCa",), ("hypercalcemia",)),
  "osteoporosis": ((), ("osteoporosis",)),
  "anemia": (("anemia",), ("anemia",)),
  "uti": (("UTI",), ("urinary tract infection",)),
  # medicines: brand / shorthand <-> generic
  "lasix": (("Lasix",), ("furosemide",)),
  "bb": (("Toprol",), ("metoprolol",)),
  "asa": (("ASA",), ("aspirin",)),
  "statin": (("Lipitor",), ("atorvastatin",)),
  "doac": (("Eliquis",), ("apixaban",)),
  "warfarin": (("Coumadin",), ("warfarin",)),
  "heparin": (("hep gtt",), ("heparin drip", "heparin infusion")),
  "ntg": (("NTG",), ("nitroglycerin",)),
  "acei": (("ACEi",), ("lisinopril",)),
  "gdmt": (("GDMT",), ("guideline-directed medical therapy",)),
  "nebs": (("DuoNebs", "nebs"), ("nebulized albuterol-ipratropium",)),
  "steroids": (("pred", "solumedrol"), ("prednisone", "methylprednisolone")),
  "dex": (("dex",), ("dexamethasone",)),
  "abx": (("abx",), ("antibiotics",)),
  "ctx": (("CTX/azithro",), ("ceftriaxone and azithromycin",)),
  "cefepime": (("cefepime",), ("cefepime",)),
  "ics": (("ICS/LABA",), ("inhaled steroid/long-acting bronchodilator",)),
  "o2": (("O2",), ("supplemental oxygen",)),
  "kayex": (("Lokelma",), ("sodium zirconium cyclosilicate",)),
  "bicarb": (("bicarb",), ("sodium bicarbonate",)),
  "epo": (("EPO",), ("erythropoietin",)),
  "ppi": (("PPI", "protonix"), ("pantoprazole",)),
  "octreotide": (("octreotide gtt",), ("octreotide",)),
  "lactulose": (("lactulose",), ("lactulose",)),
  "prbc": (("PRBCs", "1u pRBC"), ("packed red blood cells", "one unit of blood")),
  "ivf": (("IVF", "LR"), ("IV fluids", "lactated Ringer's")),
  "tpa": (("tPA",), ("alteplase",)),
  "aed": (("Keppra",), ("levetiracetam",)),
  "triptan": (("imitrex",), ("sumatriptan",)),
  "gaba": (("gabapentin",), ("gabapentin",)),
  "nsaid": (("NSAIDs",), ("anti-inflammatories", "ibuprofen")),
  "opioid": (("oxy",), ("oxycodone",)),
  "lovenox": (("Lovenox",), ("enoxaparin",)),
  "chemo": (("AC-T", "carbo/taxol"), ("chemotherapy", "carboplatin and paclitaxel")),
  "gcsf": (("G-CSF",), ("filgrastim",)),
  "insulin": (("insulin gtt",), ("insulin drip", "insulin infusion")),
  "basal": (("Lantus",), ("insulin glargine",)),
  "metformin": (("metformin",), ("metformin",)),
  "levo": (("Synthroid",), ("levothyroxine",)),
  "mmi": (("MMI",), ("methimazole",)),
  "hydrocort": (("stress-dose HC",), ("hydrocortisone",)),
  "bisphos": (("zoledronic acid", "Zometa"), ("zoledronic acid",)),
  # tests and procedures
  "tte": (("TTE", "echo"), ("transthoracic echocardiogram", "echocardiogram")),
  "ekg": (("EKG", "ECG"), ("electrocardiogram",)),
  "cath": (("LHC", "cath"), ("cardiac catheterization", "left heart catheterization")),
  "pci": (("PCI", "DES"), ("percutaneous coronary intervention", "drug-eluting stent")),
  "tele": (("tele",), ("telemetry",)),
  "holter": (("Holter", "ZIO patch"), ("ambulatory cardiac monitor",)),
  "cxr": (("CXR",), ("chest x-ray", "chest radiograph")),
  "cta": (("CTA chest", "CTPA"), ("CT angiogram of the chest",)),
  "ct_chest": (("CT chest",), ("CT of the chest",)),
  "pft": (("PFTs",), ("pulmonary function tests", "spirometry")),
  "bronch": (("bronch", "EBUS"), ("bronchoscopy", "endobronchial ultrasound")),
  "thora": (("thora",), ("thoracentesis",)),
  "abg": (("ABG", "VBG"), ("arterial blood gas", "blood gas")),
  "renal_us": (("RUS",), ("renal ultrasound",)),
  "ua": (("UA",), ("urinalysis",)),
  "upcr": (("UPCR",), ("urine protein-to-creatinine ratio",)),
  "hd": (("HD", "iHD"), ("hemodialysis", "dialysis")),
  "pd_dialysis": (("PD",), ("peritoneal dialysis",)),
  # the same letters mean other things elsewhere (HD, PD, MS, RA, PT, Ca, BM): left to context
  "hosp_day": (("HD#",), ("hospital day",)),
  "hd_cath": (("tunneled HD cath", "HD line"), ("tunneled dialysis catheter",)),
  "kidney_bx": (("renal bx",), ("kidney biopsy",)),
  "egd": (("EGD",), ("upper endoscopy", "esophagogastroduodenoscopy")),
  "colo": (("colo", "flex sig"), ("colonoscopy", "flexible sigmoidoscopy")),
  "ruq_us": (("RUQ US",), ("right upper quadrant ultrasound",)),
  "ct_abd": (("CT A/P",), ("CT of the abdomen and pelvis",)),
  "para": (("para", "LVP"), ("paracentesis", "large-volume paracentesis")),
  "mri_brain": (("MRI brain",), ("MRI of the brain",)),
  "ct_head": (("CTH", "CT head"), ("CT of the head", "noncontrast head CT")),
  "eeg": (("EEG", "vEEG"), ("electroencephalogram", "video EEG")),
  "lp": (("LP",), ("lumbar puncture",)),
  "emg": (("EMG/NCS",), ("nerve conduction studies",)),
  "xr": (("XR", "plain films"), ("x-rays", "radiographs")),
  "mri_spine": (("MRI L-spine", "MRI T/L-spine"), ("MRI of the lumbar spine",)),
  "pt_ot": (("PT/OT",), ("physical and occupational therapy",)),
  "wbat": (("WBAT",), ("weight bearing as tolerated",)),
  "orif": (("ORIF",), ("open reduction internal fixation",)),
  "injection": (("CSI",), ("corticosteroid injection",)),
  "pet": (("PET/CT",), ("PET scan",)),
  "bmbx": (("BM bx",), ("bone marrow biopsy",)),
  "port": (("port",), ("port-a-cath",)),
  "xrt": (("XRT",), ("radiation therapy",)),
  "fna": (("FNA",), ("fine needle aspiration",)),
  "thyroid_us": (("thyroid US",), ("thyroid ultrasound",)),
  "stim": (("cosyntropin stim",), ("ACTH stimulation test",)),
  # services, as other teams' notes name them (a note never names its own service)
  "svc_cardiology": (("cards",), ("cardiology",)),
  "svc_pulmonology": (("pulm",), ("pulmonology",)),
  "svc_nephrology": (("renal",), ("nephrology",)),
  "svc_gastroenterology": (("GI",), ("gastroenterology",)),
  "svc_neurology": (("neuro",), ("neurology",)),
  "svc_orthopedics": (("ortho",), ("orthopedics",)),
  "svc_oncology": (("heme/onc",), ("oncology",)),
  "svc_endocrinology": (("endo",), ("endocrinology",)),
}

# Laboratory values: (abbreviations, expansions, normal low, normal high, decimals). Problems move some of them
# out of range; most decimals are single digits around a point, which a word tokenizer drops ("3.4" -> nothing),
# so the value is there for a reader, not for a bag of words.
LABS: dict[str, tuple[tuple[str, ...], tuple[str, ...], float, float, int]] = {
  "na": (("Na",), ("sodium",), 135, 144, 0),
  "k": (("K",), ("potassium",), 3.6, 4.9, 1),
  "cr": (("Cr",), ("creatinine",), 0.6, 1.1, 1),
  "bun": (("BUN",), ("BUN",), 8, 22, 0),
  "hco3": (("HCO3", "bicarb"), ("bicarbonate",), 22, 28, 0),
  "glu": (("BG", "glucose"), ("glucose",), 78, 135, 0),
  "wbc": (("WBC",), ("white count",), 4.5, 10.5, 1),
  "hgb": (("Hgb", "H/H"), ("hemoglobin",), 12.0, 15.5, 1),
  "plt": (("plt",), ("platelets",), 160, 390, 0),
  "trop": (("trop", "hs-trop"), ("troponin",), 0.0, 0.03, 2),
  "bnp": (("BNP", "proBNP"), ("BNP",), 20, 95, 0),
  "lipase": (("lipase",), ("lipase",), 12, 55, 0),
  "tbili": (("Tbili",), ("total bilirubin",), 0.3, 1.1, 1),
  "inr": (("INR", "PT/INR"), ("INR",), 0.9, 1.1, 1),
  "alb": (("alb",), ("albumin",), 3.6, 4.6, 1),
  "tsh": (("TSH",), ("TSH",), 0.6, 3.8, 1),
  "a1c": (("A1c", "HbA1c"), ("hemoglobin A1c",), 5.2, 6.1, 1),
  "ca": (("Ca",), ("calcium",), 8.7, 10.1, 1),
  "lactate": (("lactate",), ("lactic acid",), 0.7, 1.8, 1),
  "anc": (("ANC",), ("absolute neutrophil count",), 1800, 6500, 0),
  "upcr": (("UPCR",), ("urine protein/Cr ratio",), 0.05, 0.2, 1),
  "ef": (("EF", "LVEF"), ("ejection fraction",), 55, 65, 0),
  "pco2": (("pCO2",), ("pCO2",), 36, 44, 0),
  "ddimer": (("D-dimer",), ("D-dimer",), 0.1, 0.4, 1),
  "crp": (("CRP",), ("C-reactive protein",), 0.1, 0.8, 1),
  "ft4": (("fT4",), ("free T4",), 0.9, 1.6, 1),
  "cortisol": (("AM cortisol",), ("morning cortisol",), 8, 20, 0),
}
# Labs many notes carry whatever the problem: their names are no clue, only their values are.
_PANEL = ("na", "k", "cr", "bun", "hco3", "glu", "wbc", "hgb", "plt")
# Each service's patients, whatever brought them in, tend to have some panel values out of range (kidney
# patients a high Cr, oncology patients low counts, ...). They overlap (a low Hgb: GI, oncology or a fresh
# joint replacement), so the label shows in which values co-occur, and in numbers a bag of words mostly drops.
SIGNATURE_LABS: dict[str, dict[str, tuple[float, float]]] = {
  "cardiology": {"k": (3.2, 3.6), "cr": (1.2, 1.7)},
  "pulmonology": {"hco3": (30, 36), "wbc": (10.8, 14.5)},
  "nephrology": {"cr": (1.9, 4.8), "bun": (32, 74), "k": (5.1, 5.8)},
  "gastroenterology": {"hgb": (7.4, 9.9), "plt": (55, 125)},
  "neurology": {"glu": (70, 105), "na": (136, 141)},
  "orthopedics": {"hgb": (9.2, 11.4)},
  "oncology": {"wbc": (1.1, 3.4), "hgb": (8.3, 10.4), "plt": (65, 140)},
  "endocrinology": {"glu": (190, 390), "na": (129, 134)},
}
_SIGNATURE_RATE = 0.6


class Problem:
  """One presenting problem: what the note reports positive or out of range, and what is done about it.

  `owners` weighs the specialties that write notes about it: most problems belong to two or three, so the
  problem alone does not give the label; the service's own plan lines (`APPROACH`) and the details do.
  """

  def __init__(self, owners: dict[str, float], dx: list[str], sx: list[str], exam: dict[str, list[str]],
               labs: dict[str, tuple[float, float]], tests: list[str], plan: list[str],
               vitals: dict[str, tuple[float, float]] | None = None):
    self.owners, self.dx, self.sx, self.exam, self.labs = owners, dx, sx, exam, labs
    self.tests, self.plan, self.vitals = tests, plan, vitals or {}


# `<key>` is a concept or a lab's name, `<a-b>` a random integer in [a, b].
PROBLEMS: list[Problem] = [
  # heart failure: cardiology; nephrology sees the same overloaded patient through the kidney
  Problem({"cardiology": 3, "nephrology": 1.5, "pulmonology": 0.5}, ["chf", "chf"],
          ["sob", "doe", "orthopnea", "pnd", "le_edema"],
          {"Lungs": ["bibasilar crackles", "crackles to mid-lung fields"], "Ext": ["<le_edema> <2-3>+ to knees",
           "pitting edema to the shins"], "CV": ["JVP <10-14> cm", "S3 present"]},
          {"bnp": (800, 3400), "cr": (1.3, 2.2), "na": (128, 134)},
          ["<tte>: <ef> <20-40>%, dilated LV", "<cxr>: pulmonary vascular congestion, small bilateral effusions"],
          ["IV <lasix> <40-80> mg BID, goal net negative 1-2 L/day", "daily weights, strict I/Os",
           "fluid restriction 1.5 L/day", "hold <acei> while diuresing"], {"spo2": (89, 93)}),
  Problem({"cardiology": 3, "neurology": 0.7, "endocrinology": 0.5}, ["afib", "afib"], ["palp", "dizzy", "sob"],
          {"CV": ["irregularly irregular, tachycardic", "irreg irreg rhythm"]}, {"tsh": (0.6, 3.8), "k": (3.2, 3.6)},
          ["<ekg>: <afib> with RVR, rate <120-150>", "<tte>: normal <ef>, LA dilated"],
          ["rate control with <bb> <25-50> mg q6h", "CHA2DS2-VASc <2-5>: start <doac>", "keep K > 4, Mg > 2"],
          {"hr": (118, 152)}),
  Problem({"cardiology": 3, "gastroenterology": 0.5, "pulmonology": 0.5}, ["nstemi", "acs"], ["cp", "sob", "nv"],
          {"CV": ["RRR, diaphoretic", "no murmurs, diaphoretic"]}, {"trop": (0.09, 3.5)},
          ["<ekg>: <1-2> mm ST depressions in V4-V6", "serial <trop> uptrending"],
          ["load <asa> 325 mg, high-intensity <statin>", "<heparin> per ACS protocol", "plan <cath> in AM",
           "<ntg> SL PRN <cp>"]),
  Problem({"cardiology": 2, "neurology": 2}, ["syncope", "tia"], ["syncope", "dizzy", "palp"],
          {"Neuro": ["nonfocal, no deficits", "CN II-XII intact, no drift"], "CV": ["soft systolic murmur"]}, {},
          ["<ekg>: sinus, no ischemic changes", "<ct_head>: no acute process", "orthostatics negative"],
          ["<holter> for 14 days", "<tte> to eval for structural disease", "<mri_brain> if recurs",
           "no driving x 6 months"]),
  # lungs
  Problem({"pulmonology": 3, "cardiology": 0.5}, ["copd", "copd"], ["sob", "wheeze", "cough"],
          {"Lungs": ["diffuse expiratory wheezes, prolonged expiration", "poor air movement, wheezes"]},
          {"pco2": (50, 66), "wbc": (10.5, 13.0)},
          ["<cxr>: hyperinflation, no focal consolidation", "<abg> 7.<31-35>/<50-66>"],
          ["<nebs> q4h, <steroids> 40 mg x5 days", "<o2> to goal SpO2 88-92%", "resume <ics> at discharge",
           "azithromycin x5 days"], {"spo2": (84, 89), "rr": (22, 28)}),
  Problem({"pulmonology": 3, "oncology": 1, "nephrology": 0.5}, ["pna", "pna"], ["cough", "fever", "sob"],
          {"Lungs": ["crackles at the R base", "egophony over the LLL"]}, {"wbc": (13.0, 21.0), "lactate": (1.9, 3.5)},
          ["<cxr>: RLL consolidation", "<cxr>: LLL opacity", "sputum and blood cultures pending"],
          ["<ctx>, narrow per cultures", "incentive spirometry", "<o2> PRN"], {"t": (38.2, 39.4), "spo2": (88, 93)}),
  Problem({"pulmonology": 2.5, "cardiology": 1, "oncology": 1}, ["pe", "pe"], ["sob", "cp", "le_edema"],
          {"Lungs": ["CTAB, tachypneic"], "Ext": ["R calf swelling and tenderness"]},
          {"ddimer": (1.2, 4.8), "trop": (0.04, 0.2)},
          ["<cta>: segmental <pe> in the RLL", "LE duplex: R popliteal <dvt>"],
          ["<heparin>, transition to <doac>", "<tte> for RV strain", "outpatient f/u in 3 months"],
          {"hr": (104, 124), "spo2": (88, 93)}),
  Problem({"pulmonology": 2, "oncology": 1.5, "cardiology": 0.5}, ["effusion", "effusion"], ["sob", "cough"],
          {"Lungs": ["decreased breath sounds and dullness at the R base", "absent breath sounds L base"]}, {},
          ["<cxr>: large R <effusion>", "<ct_chest>: moderate L <effusion>, no PE"],
          ["diagnostic and therapeutic <thora>", "send cell count, cytology, LDH and protein", "f/u cytology"]),
  # kidneys
  Problem({"nephrology": 3, "cardiology": 0.5, "oncology": 0.5}, ["aki", "aki"], ["dec_uop", "nv", "fatigue"],
          {"Ext": ["no edema, dry mucous membranes", "trace edema"]},
          {"cr": (2.1, 5.6), "bun": (38, 92), "k": (5.1, 5.9)},
          ["<renal_us>: no hydronephrosis", "<ua>: muddy brown casts", "FeNa <0-3>.<1-9>%"],
          ["hold nephrotoxins, renally dose meds", "<ivf> 1 L then reassess", "strict I/Os, bladder scan",
           "no indication for <hd> at this time"]),
  Problem({"nephrology": 3, "endocrinology": 0.5}, ["ckd", "esrd"], ["fatigue", "pruritus", "le_edema"],
          {"Ext": ["<1-2>+ edema", "L arm AVF with good thrill"]},
          {"cr": (3.2, 7.8), "hgb": (8.1, 10.2), "hco3": (16, 20)},
          ["<renal_us>: small echogenic kidneys", "PTH <180-420>"],
          ["<hd> MWF, UF goal <2-3> L", "<epo> with <hd>", "<bicarb> 650 mg TID",
           "renal diet, 2 g K, phosphate binder"]),
  Problem({"nephrology": 2.5, "cardiology": 1, "endocrinology": 0.7}, ["hyperk", "hyperk"], ["weakness", "palp"],
          {"Neuro": ["nonfocal, mild diffuse weakness"]}, {"k": (6.0, 7.1), "cr": (1.6, 3.4)},
          ["<ekg>: peaked T waves", "repeat K on non-hemolyzed sample"],
          ["calcium gluconate, insulin/dextrose", "<kayex> 10 g TID", "stop <acei> and K supplements", "low-K diet"]),
  Problem({"nephrology": 3, "gastroenterology": 0.7}, ["nephrotic", "nephrotic"], ["le_edema", "fatigue"],
          {"Ext": ["<3-4>+ pitting edema to thighs", "periorbital edema"]},
          {"upcr": (4.2, 11.8), "alb": (1.5, 2.6), "cr": (1.0, 1.8)},
          ["<ua>: 3+ protein, oval fat bodies", "PLA2R antibody sent"],
          ["<kidney_bx> scheduled", "<acei> for antiproteinuric effect", "<lasix> for edema", "<statin>"]),
  # gut and liver
  Problem({"gastroenterology": 3, "cardiology": 0.7, "oncology": 0.7}, ["gib", "pud"],
          ["melena", "dizzy", "hematemesis"],
          {"Abd": ["soft, mild epigastric TTP", "nondistended, NT"]}, {"hgb": (6.1, 8.4), "bun": (36, 64)},
          ["<egd>: clean-based duodenal ulcer", "rectal exam: black guaiac+ stool"],
          ["<ppi> 40 mg IV BID", "transfuse <prbc> for Hgb < 7", "2 large-bore IVs, type and cross", "hold <doac>"],
          {"hr": (102, 120)}),
  Problem({"gastroenterology": 3, "nephrology": 1}, ["cirrhosis", "cirrhosis"], ["confusion", "abd_pain", "le_edema"],
          {"Abd": ["distended, + fluid wave", "tense ascites"], "Neuro": ["+ asterixis", "oriented x2, asterixis"]},
          {"tbili": (2.4, 7.8), "inr": (1.6, 2.5), "alb": (2.0, 2.8), "plt": (48, 98), "na": (126, 133)},
          ["MELD-Na <18-29>", "<ruq_us>: nodular liver, patent portal vein"],
          ["diagnostic <para>, r/o SBP", "<lactulose> titrate to 3 BMs/day, rifaximin", "albumin with LVP",
           "transplant eval"]),
  Problem({"gastroenterology": 3, "endocrinology": 0.7}, ["pancreatitis", "pancreatitis"], ["abd_pain", "nv"],
          {"Abd": ["epigastric TTP, guarding", "TTP in the epigastrium"]}, {"lipase": (420, 3200), "wbc": (11.0, 15.0)},
          ["<ct_abd>: peripancreatic stranding", "<ruq_us>: cholelithiasis, CBD 5 mm"],
          ["aggressive <ivf>, advance diet as tolerated", "pain control", "check TG level", "EtOH cessation"]),
  Problem({"gastroenterology": 3, "oncology": 0.7}, ["ibd", "ibd"], ["diarrhea", "brbpr", "abd_pain"],
          {"Abd": ["LLQ TTP, no rebound", "diffuse mild TTP"]}, {"crp": (3.5, 12.0), "hgb": (9.5, 11.5)},
          ["<colo>: continuous colitis to the splenic flexure", "C diff negative"],
          ["IV <steroids>", "stool studies", "discuss biologic therapy", "<colo> surveillance"]),
  # brain and nerves
  Problem({"neurology": 3, "cardiology": 0.7}, ["cva", "cva"], ["focal_weak", "numbness", "confusion"],
          {"Neuro": ["R facial droop, RUE <2-4>/5", "L pronator drift, dysarthria"]}, {"glu": (110, 160)},
          ["<ct_head>: no hemorrhage", "<mri_brain>: acute infarct in the L MCA territory", "NIHSS <3-12>"],
          ["<tpa> not given (outside window)", "permissive HTN to 220/120", "<asa> and high-intensity <statin>",
           "<tte> with bubble, <tele> for <afib>"], {"bp": (168, 205)}),
  Problem({"neurology": 3, "oncology": 0.5}, ["seizure", "epilepsy"], ["confusion", "ha"],
          {"Neuro": ["postictal, tongue laceration", "drowsy but arousable, nonfocal"]}, {"lactate": (2.5, 6.5)},
          ["<eeg>: L temporal sharp waves", "<ct_head>: no acute findings"],
          ["load <aed> 1500 mg, then 750 mg BID", "seizure precautions", "no driving x 6 months", "<mri_brain> w/wo"]),
  Problem({"neurology": 3, "endocrinology": 0.4}, ["migraine", "migraine"], ["ha", "nv", "vision"],
          {"Neuro": ["nonfocal, photophobic", "normal fundi, no meningismus"]}, {},
          ["<ct_head>: negative", "headache diary reviewed: <8-15> days/month"],
          ["<triptan> PRN, max 2 doses/day", "start topiramate for prophylaxis", "limit analgesic use"]),
  Problem({"neurology": 2, "orthopedics": 2, "oncology": 0.7}, ["radic", "stenosis"], ["back_pain", "numbness"],
          {"Neuro": ["+ SLR on the L, decreased L ankle reflex", "EHL 4/5 on the R"], "MSK": ["paraspinal TTP"]}, {},
          ["<mri_spine>: L4-5 disc herniation", "<mri_spine>: severe L4-5 stenosis"],
          ["<emg>", "<gaba> 300 mg TID", "<pt_ot>", "epidural steroid injection referral"]),
  # bones and joints
  Problem({"orthopedics": 3, "cardiology": 0.3}, ["tka", "tha"], ["knee_pain", "hip_pain"],
          {"MSK": ["incision c/d/i, ROM 0-<80-100> degrees", "dressing c/d/i, compartments soft"],
           "Ext": ["mild swelling of the operative leg", "trace edema"]}, {"hgb": (8.9, 10.9)},
          ["POD#<1-3> s/p R <tka>", "POD#<1-3> s/p L <tha>", "<xr>: components in good position"],
          ["<wbat>, <pt_ot> BID", "<lovenox> 40 mg daily x 14 days for DVT ppx",
           "multimodal pain control, <opioid> PRN",
           "f/u in clinic 2 weeks for staple removal"]),
  Problem({"orthopedics": 3, "endocrinology": 0.8, "oncology": 0.5}, ["hip_fx", "osteoporosis"], ["hip_pain"],
          {"MSK": ["R leg shortened and externally rotated", "pain with log roll"]}, {"hgb": (9.8, 12.0)},
          ["<xr>: displaced R <hip_fx>", "DXA T-score -<2-3>.<5-9>"],
          ["<orif> vs hemiarthroplasty tomorrow", "NPO after midnight", "hold <doac>",
           "start vitamin D, bisphosphonate"]),
  Problem({"orthopedics": 3, "neurology": 0.3}, ["oa", "oa"], ["knee_pain", "hip_pain"],
          {"MSK": ["medial joint line TTP, crepitus", "small effusion, ROM 5-110 degrees"]}, {},
          ["<xr>: medial joint space narrowing, osteophytes", "BMI <31-38>"],
          ["<injection> today", "<nsaid> with food", "quad strengthening with <pt_ot>", "discussed <tka> when ready"]),
  # cancer
  Problem({"oncology": 3, "orthopedics": 0.3}, ["breast_ca", "breast_ca"], ["fatigue", "nv"],
          {"Skin": ["port site clean", "R breast well-healed scar"]}, {"wbc": (2.8, 4.2), "hgb": (9.4, 11.2)},
          ["C<2-6>D1 of <chemo>", "<pet>: decreased FDG avidity"],
          ["proceed with C<2-6> of <chemo>", "<gcsf> on day 2", "antiemetics per protocol", "restage after 4 cycles"]),
  Problem({"oncology": 2.5, "pulmonology": 1.5}, ["lung_ca", "mets"], ["cough", "wt_loss", "sob"],
          {"Lungs": ["decreased BS at the L apex", "CTAB"]}, {"ca": (10.4, 11.4), "alb": (2.9, 3.5)},
          ["<ct_chest>: 3.<1-9> cm spiculated RUL mass", "<bronch> with biopsy: adenocarcinoma"],
          ["<pet> for staging", "molecular testing sent", "tumor board next week", "<mri_brain> for staging"]),
  Problem({"oncology": 3, "pulmonology": 0.5, "gastroenterology": 0.3}, ["fn", "fn"], ["fever", "fatigue"],
          {"Skin": ["port site without erythema", "mucositis"]}, {"anc": (50, 450), "wbc": (0.4, 1.6)},
          ["blood cultures x2 from port and periphery", "<cxr>: no infiltrate"],
          ["<cefepime> 2 g q8h", "neutropenic precautions", "hold <chemo>", "<gcsf>"], {"t": (38.3, 39.3)}),
  Problem({"oncology": 2, "orthopedics": 1.2, "neurology": 1.2}, ["mets", "colon_ca"], ["back_pain", "bone_pain"],
          {"Neuro": ["strength 5/5, no saddle anesthesia", "BLE 4/5, hyperreflexic"], "MSK": ["midline TTP at T10"]},
          {"ca": (10.6, 12.2)}, ["<mri_spine>: T10 lytic lesion, no cord compression", "bone scan: multiple lesions"],
          ["<dex> 4 mg q6h", "rad onc for <xrt>", "<bisphos> monthly", "pain control, bowel regimen"]),
  # glands
  Problem({"endocrinology": 3, "nephrology": 0.7}, ["dka", "dm2"], ["polyuria", "nv", "abd_pain"],
          {"Gen": ["dry mucous membranes, Kussmaul respirations"]},
          {"glu": (380, 640), "hco3": (8, 15), "k": (5.0, 5.8)},
          ["anion gap <20-31>", "beta-hydroxybutyrate 5.<1-9>"],
          ["<insulin> per DKA protocol, q1h BG checks", "<ivf> with K repletion", "transition to <basal>",
           "diabetes education"]),
  Problem({"endocrinology": 3, "cardiology": 1}, ["hyperthyroid", "hypothyroid"], ["palp", "tremor", "wt_loss"],
          {"Neck": ["diffusely enlarged, nontender thyroid", "thyroid nodule L lobe"]},
          {"tsh": (0.01, 0.05), "ft4": (2.8, 4.6)}, ["<thyroid_us>: diffuse enlargement", "TRAb positive"],
          ["<mmi> <10-20> mg daily", "<bb> for symptoms", "repeat TFTs in 6 weeks"], {"hr": (104, 122)}),
  Problem({"endocrinology": 2.5, "nephrology": 1.5, "neurology": 0.5}, ["hypona", "adrenal"],
          ["confusion", "nv", "weakness"], {"Gen": ["euvolemic on exam", "mildly confused, oriented x2"]},
          {"na": (117, 128), "cortisol": (1, 4)}, ["serum osm <250-270>, urine osm <310-520>", "<stim> pending"],
          ["fluid restriction 1 L", "correct Na no more than 8 per 24 h", "<hydrocort> if stim abnormal",
           "q4h BMP"]),
  Problem({"endocrinology": 2, "oncology": 1.5, "nephrology": 0.5}, ["hypercalcemia", "hypercalcemia"],
          ["confusion", "bone_pain", "polyuria"], {"Gen": ["dry mucous membranes"]}, {"ca": (11.6, 14.2)},
          ["PTH suppressed, PTHrP pending", "<ct_chest> for occult malignancy"],
          ["<ivf> 200 mL/h", "<bisphos> 4 mg IV", "calcitonin", "stop HCTZ and calcium supplements"]),
]

# How each service works, whatever the problem: a note carries one to three of its lines. Half are shared by two
# services, so each line narrows the label without naming it.
APPROACH: list[tuple[str, tuple[str, ...]]] = [
  ("<tele>", ("cardiology", "neurology")),
  ("daily weights, strict I/Os", ("cardiology", "nephrology")),
  ("cont <asa>/<statin>", ("cardiology", "neurology")),
  ("goal BP < 130/80", ("cardiology", "nephrology")),
  ("repeat <tte> in 3 months", ("cardiology",)),
  ("uptitrate <gdmt> as BP allows", ("cardiology",)),
  ("<ekg> in AM", ("cardiology",)),
  ("ambulatory SpO2 before discharge", ("pulmonology",)),
  ("<pft> as outpatient", ("pulmonology",)),
  ("wean <o2> as tolerated", ("pulmonology", "oncology")),
  ("inhaler technique reviewed", ("pulmonology",)),
  ("smoking cessation counseling, nicotine patch", ("pulmonology", "cardiology")),
  ("renally dose all meds", ("nephrology", "oncology")),
  ("avoid NSAIDs and IV contrast", ("nephrology",)),
  ("BMP in AM", ("nephrology", "endocrinology")),
  ("vein preservation L arm", ("nephrology",)),
  ("discussed home <pd_dialysis> vs in-center <hd>", ("nephrology",)),
  ("trend Cr and UOP", ("nephrology",)),
  ("NPO after midnight for procedure", ("gastroenterology", "orthopedics")),
  ("clear liquid diet, bowel prep", ("gastroenterology",)),
  ("trend H/H q8h", ("gastroenterology",)),
  ("<ppi> daily", ("gastroenterology", "oncology")),
  ("neuro checks q4h", ("neurology",)),
  ("fall precautions", ("neurology", "orthopedics")),
  ("aspiration precautions, SLP swallow eval", ("neurology", "pulmonology")),
  ("<pt_ot> eval", ("neurology", "orthopedics")),
  ("ice and elevation", ("orthopedics",)),
  ("<wbat>", ("orthopedics",)),
  ("DVT ppx with <lovenox>", ("orthopedics", "oncology")),
  ("f/u <xr> at 6 weeks", ("orthopedics",)),
  ("goals of care discussed with pt and family", ("oncology", "pulmonology")),
  ("antiemetics PRN", ("oncology", "gastroenterology")),
  ("CBC with diff in AM", ("oncology",)),
  ("palliative care following", ("oncology",)),
  ("fingersticks AC/HS", ("endocrinology",)),
  ("check <a1c> and TSH", ("endocrinology",)),
  ("diabetes educator to see", ("endocrinology",)),
  ("sliding scale insulin", ("endocrinology", "orthopedics")),
]

# Comorbidities and the home medicine that goes with each: every note lists some, from any specialty.
COMORBID: list[tuple[str, str]] = [
  ("htn", "<acei> 20 mg"), ("dm2", "<metformin> 1000 mg BID"), ("hld", "<statin> 40 mg"), ("cad", "<asa> 81 mg"),
  ("afib", "<doac> 5 mg BID"), ("chf", "<lasix> 40 mg"), ("copd", "<ics>"), ("osa", "CPAP nightly"),
  ("ckd", "<bicarb>"), ("gerd", "<ppi> 40 mg"), ("hypothyroid", "<levo> 88 mcg"), ("oa", "acetaminophen PRN"),
  ("ra", "methotrexate weekly"), ("breast_ca", "tamoxifen"), ("cva", "<asa> 81 mg"), ("epilepsy", "<aed> 500 mg BID"),
  ("neuropathy", "<gaba> 300 mg TID"), ("as", ""), ("mitral", ""), ("parkinson", "carbidopa-levodopa"),
  ("ms", "ocrelizumab"), ("anemia", "iron sulfate"), ("dvt", "<warfarin>"), ("osteoporosis", "alendronate"),
  ("pud", "<ppi> 40 mg"), ("uti", ""), ("ild", "pirfenidone"), ("colon_ca", ""),
]

_SYMPTOMS = ("cp", "sob", "doe", "palp", "syncope", "le_edema", "cough", "wheeze", "fever", "nv", "abd_pain",
             "melena", "brbpr", "diarrhea", "ha", "dizzy", "focal_weak", "numbness", "back_pain", "wt_loss",
             "night_sweats", "polyuria", "dec_uop", "confusion", "vision", "tremor", "hematemesis")

_NORMAL_EXAM = {
  "Gen": ["A&Ox3, NAD", "AAOx3, no acute distress", "alert and oriented times three, comfortable", "well-appearing"],
  "CV": ["RRR, no m/r/g", "regular rate and rhythm, no murmurs", "RRR, nl S1/S2"],
  "Lungs": ["CTAB", "clear to auscultation bilaterally", "CTAB, no wheezes or crackles", "good air movement"],
  "Abd": ["soft, NT/ND, +BS", "soft, nontender, nondistended", "benign"],
  "Ext": ["no edema", "WWP, no <le_edema>", "no clubbing, cyanosis or edema"],
  "Neuro": ["CN II-XII intact, strength 5/5 x4", "nonfocal", "moving all extremities, sensation intact"],
  "MSK": ["FROM all joints", "no joint effusion or deformity"],
  "Skin": ["no rashes", "warm and dry"],
  "Neck": ["supple, no JVD", "no thyromegaly"],
}

_GENERIC = [
  "Pt seen and examined at bedside.", "Chart, labs and imaging reviewed.", "D/w attending, who agrees with plan.",
  "PT/OT to see.", "Plan discussed with pt, who verbalized understanding.", "Code: full.",
  "Dispo: home when medically stable.", "Diet: as tolerated.", "<hosp_day> <2-6>.", "Pt is a reliable historian.",
  "Lives with spouse, independent in ADLs.",
]

# Difficulty knobs (measured in the module docstring): how evenly a service's notes spread over problems it
# shares with other services (1 = as weighted in PROBLEMS, 0 = uniformly), and how often a plan carries a line
# of another service's habits.
_OWNER_FLATTEN = 0.3
_CROSS_COVER_RATE = 0.5

NOTE_TYPES = ("progress_note", "consult", "discharge_summary", "clinic_note", "procedure_note")
_NOTE_WEIGHTS = (0.35, 0.2, 0.15, 0.2, 0.1)

_TOKEN = re.compile(r"<([a-z_0-9]+)>|<(\d+)-(\d+)>")


class _Writer:
  """Renders `<key>` templates in one note's style: its abbreviation rate, its habit of defining terms."""

  def __init__(self, rng: random.Random):
    self.rng = rng
    # Terse, dictated and mixed writers: the same concept is written both ways across the corpus.
    self.abbr_rate = rng.choice([0.9, 0.9, 0.5, 0.15])
    self.define_rate = 0.0 if self.abbr_rate > 0.8 else 0.35
    self.seen: set[str] = set()

  def concept(self, key: str) -> str:
    abbrs, exps = CONCEPTS[key] if key in CONCEPTS else LABS[key][:2]
    first = key not in self.seen
    self.seen.add(key)
    if not abbrs or (exps and self.rng.random() >= self.abbr_rate):
      exp = self.rng.choice(exps)
      # "atrial fibrillation (AF)": the definitions that tie the two forms together in unlabelled text.
      abbr = abbrs[exps.index(exp) % len(abbrs)] if abbrs else exp
      if abbr != exp and first and self.rng.random() < self.define_rate:
        return f"{exp} ({abbr})"
      return exp
    return abbrs[self.rng.randrange(len(abbrs))]

  def render(self, template: str) -> str:
    def sub(m: re.Match) -> str:
      if m.group(1):
        return self.concept(m.group(1))
      return str(self.rng.randint(int(m.group(2)), int(m.group(3))))
    return _TOKEN.sub(sub, template)

  def join(self, items: list[str]) -> str:
    if len(items) <= 1:
      return "".join(items)
    return ", ".join(items[:-1]) + self.rng.choice([" and ", ", ", " & "]) + items[-1]


def _value(lab: str, lo: float, hi: float, rng: random.Random) -> str:
  v = rng.uniform(lo, hi)
  decimals = LABS[lab][4]
  return f"{v:.{decimals}f}" if decimals else str(int(round(v)))


def _vitals(problem: Problem, w: _Writer) -> str:
  rng = w.rng
  ranges = {"t": (36.4, 37.3), "hr": (62, 96), "bp": (112, 146), "rr": (14, 19), "spo2": (94, 99)}
  ranges.update(problem.vitals)
  t = rng.uniform(*ranges["t"])
  hr, sbp, rr, spo2 = (rng.randint(*map(int, ranges[k])) for k in ("hr", "bp", "rr", "spo2"))
  on = rng.choice(["RA", "RA", "2L NC"]) if spo2 >= 90 else rng.choice(["RA", "3L NC", "4L NC"])
  return (f"{rng.choice(['VS', 'Vitals'])}: T {t:.1f} HR {hr} BP {sbp}/{rng.randint(60, 95)} RR {rr} "
          f"SpO2 {spo2}% {on}.")


def _labs(problem: Problem, specialty: str, w: _Writer) -> str:
  rng = w.rng
  names = rng.sample(_PANEL, rng.randint(2, 4))
  ranges = {}
  if rng.random() < _SIGNATURE_RATE:
    ranges.update(SIGNATURE_LABS[specialty])
    names += [n for n in ranges if n not in names]
  ranges.update(problem.labs)
  # The problem's labs are out of range; a few others are reported in range (a named lab is no clue).
  names += [n for n in problem.labs if n not in names and rng.random() < 0.8]
  extra = [n for n in LABS if n not in names and n not in _PANEL]
  names += rng.sample(extra, rng.randint(0, 1))
  parts = []
  for n in names:
    lo, hi = ranges.get(n, LABS[n][2:4])
    unit = "%" if n in ("ef", "a1c") else ""
    parts.append(f"{w.concept(n)} {_value(n, lo, hi, rng)}{unit}")
  return rng.choice(["Labs: ", "Labs notable for ", "BMP/CBC: ", ""]) + ", ".join(parts) + "."


def _exam(problem: Problem, w: _Writer) -> str:
  rng = w.rng
  systems = rng.sample(list(_NORMAL_EXAM), rng.randint(2, 4))
  systems += [s for s in problem.exam if s not in systems]
  out = []
  for s in [s for s in _NORMAL_EXAM if s in systems]:
    pool = problem.exam.get(s) if rng.random() < 0.85 else None
    out.append(f"{s}: {w.render(rng.choice(pool or _NORMAL_EXAM[s]))}")
  return ". ".join(out) + "."

# Procedures a service writes a procedure note for (shared ones blur the label: oncology taps effusions too).
PROCEDURES: dict[str, tuple[str, ...]] = {
  "cardiology": ("cath", "tte", "pci"), "pulmonology": ("bronch", "thora"), "nephrology": ("hd_cath", "kidney_bx"),
  "gastroenterology": ("egd", "colo", "para"), "neurology": ("lp", "eeg", "emg"),
  "orthopedics": ("injection", "orif", "tka"), "oncology": ("bmbx", "port", "thora", "para", "lp"),
  "endocrinology": ("fna", "thyroid_us"),
}


class _Patient:
  def __init__(self, rng: random.Random, specialty: str):
    self.specialty = specialty
    self.age = rng.randint(24, 91)
    self.sex = rng.choice(["M", "F"])
    self.comorbid = rng.sample(COMORBID, rng.randint(1, 4))


def _pmh(p: _Patient, w: _Writer) -> str:
  return w.join([w.concept(c) for c, _ in p.comorbid])


def _hpi(p: _Patient, prob: Problem, w: _Writer) -> str:
  rng = w.rng
  pos = rng.sample(prob.sx, min(len(prob.sx), rng.randint(1, 3)))
  if rng.random() < 0.3:  # an unrelated complaint: symptoms are shared between problems anyway
    pos.append(rng.choice([s for s in _SYMPTOMS if s not in pos]))
  neg = rng.sample([s for s in _SYMPTOMS if s not in pos], rng.randint(2, 4))
  sex = p.sex if w.abbr_rate > 0.5 else {"M": "man", "F": "woman"}[p.sex]
  who = f"{p.age}{rng.choice(['yo ', ' y/o ', '-year-old '])}{sex}"
  verb = rng.choice(["c/o", "presents with", "reports", "is here with", "endorses"])
  days = rng.choice([f"x{rng.randint(2, 10)}d", f"for {rng.randint(2, 14)} days", "since yesterday", "x1 wk"])
  neg_lead = rng.choice(["Denies", "ROS neg for", "No", "Pt denies"])
  return (f"{who} w/ PMH of {_pmh(p, w)} who {verb} {w.join([w.concept(s) for s in pos])} {days}. "
          f"{neg_lead} {w.join([w.concept(s) for s in neg])}.")


def _plan(specialty: str, prob: Problem, p: _Patient, w: _Writer, numbered: bool) -> list[str]:
  rng = w.rng
  lines = [w.render(x) for x in rng.sample(prob.plan, rng.randint(1, 2))]
  own = [a for a, owners in APPROACH if specialty in owners]
  lines += [w.render(x) for x in rng.sample(own, rng.randint(0, 2))]
  if rng.random() < _CROSS_COVER_RATE:  # hospital plans mix services' habits: a line of another service's
    lines.append(w.render(rng.choice([a for a, owners in APPROACH if specialty not in owners])))
  if rng.random() < 0.45:  # names another service, never the writer's own
    others = [s for s in prob.owners if s != specialty] or [s for s in SPECIALTIES if s != specialty]
    svc = w.concept("svc_" + rng.choice(others))
    lines.append(rng.choice([f"appreciate {svc} recs", f"{svc} following", f"d/w {svc}", f"will consult {svc}"]))
  rng.shuffle(lines)
  c, med = rng.choice(p.comorbid)
  lines.append(f"{w.concept(c)}: " + (f"cont home {w.render(med)}" if med else "outpatient f/u"))
  if numbered:
    return [f"{i + 1}) {x}" for i, x in enumerate(lines)]
  return lines


def _note(note_type: str, specialty: str, p: _Patient, prob: Problem, rng: random.Random) -> str:
  w = _Writer(rng)
  headings = rng.random() < 0.75
  dx = w.concept(rng.choice(prob.dx))
  tests = [w.render(t) for t in rng.sample(prob.tests, rng.randint(1, 2))]
  sections: list[tuple[str, str]] = []
  if note_type == "progress_note":
    sections += [("S", rng.choice(["No acute events overnight. ", "Interval: ", ""]) + _hpi(p, prob, w)),
                 ("O", f"{_vitals(prob, w)} Exam: {_exam(prob, w)} {_labs(prob, specialty, w)}"),
                 ("A/P", f"{dx}. " + "; ".join(_plan(specialty, prob, p, w, False)) + ".")]
  elif note_type == "consult":
    asker = w.concept("svc_" + rng.choice([s for s in SPECIALTIES if s != specialty])) if rng.random() < 0.5 else \
      rng.choice(["primary team", "hospitalist", "ED", "PCP"])
    sections += [("Reason for consult", f"{rng.choice([dx, w.concept(rng.choice(prob.sx))])}, requested by {asker}"),
                 ("HPI", _hpi(p, prob, w)), ("Exam", _exam(prob, w)),
                 ("Data", f"{_labs(prob, specialty, w)} {'. '.join(tests)}."),
                 ("Recs", "; ".join(_plan(specialty, prob, p, w, True)) + ".")]
  elif note_type == "discharge_summary":
    course = rng.choice(["Admitted with", "Pt admitted for", "Presented with"])
    sections += [("Admission dx", dx), ("HPI", _hpi(p, prob, w)),
                 ("Hospital course", f"{course} {dx}. {'. '.join(tests)}. {_labs(prob, specialty, w)} "
                  f"Managed with: {w.render(rng.choice(prob.plan))}."),
                 ("Discharge plan", "; ".join(_plan(specialty, prob, p, w, False)) + "."),
                 ("F/u", f"clinic in {rng.randint(1, 4)} weeks, labs in {rng.randint(3, 10)} days.")]
  elif note_type == "clinic_note":
    sections += [("CC", f"f/u {dx}"), ("HPI", _hpi(p, prob, w)),
                 ("Meds", w.join([w.render(m) for _, m in p.comorbid if m]) or "none"),
                 ("Exam", f"{_vitals(prob, w)} {_exam(prob, w)}"),
                 ("A/P", f"{dx}, {rng.choice(['stable', 'improving', 'not at goal', 'worse'])}. {tests[0]}. "
                  + "; ".join(_plan(specialty, prob, p, w, False)) + f". RTC {rng.randint(1, 6)} months.")]
  else:
    proc = w.concept(rng.choice(PROCEDURES[specialty]))
    sections += [("Procedure", proc), ("Indication", f"{dx}; {w.concept(rng.choice(prob.sx))}"),
                 ("Pre-procedure", f"{_vitals(prob, w)} {_labs(prob, specialty, w)}"),
                 ("Description", rng.choice(["Consent obtained, time-out performed. ", "Informed consent signed. "])
                  + f"{proc} performed under sterile conditions without complication. "
                  + f"EBL {rng.choice(['minimal', '<5-50> mL'])}.".replace("<5-50>", str(rng.randint(5, 50)))),
                 ("Findings", ". ".join(tests) + "."),
                 ("Plan", "; ".join(_plan(specialty, prob, p, w, False)) + ".")]
  if rng.random() < 0.3:
    sections.append(("", w.render(rng.choice(_GENERIC))))
  if headings:
    return "\n".join(f"{h}: {b}" if h else b for h, b in sections)
  return " ".join(b for _, b in sections)


def generate(n_notes: int = 3000, seed: int = 0, test_fraction: float = 0.2) -> Iterator[dict]:
  """Yields the records (dicts with id, text, note_type, specialty, group, split), deterministically."""
  rng = random.Random(seed)
  n_patients = max(1, n_notes // 3)
  # A patient mostly sees one service (notes of a patient are correlated: splits must be group-aware).
  # Home services dealt in turn: the classes stay balanced however few notes are asked for.
  patients = [_Patient(rng, SPECIALTIES[i % len(SPECIALTIES)]) for i in range(n_patients)]
  by_owner = {s: [(prob, prob.owners[s]) for prob in PROBLEMS if s in prob.owners] for s in SPECIALTIES}
  for i in range(n_notes):
    patient = rng.randrange(n_patients)
    p = patients[patient]
    specialty = p.specialty if rng.random() < 0.8 else rng.choice(SPECIALTIES)
    probs, weights = zip(*by_owner[specialty])
    weights = [x**_OWNER_FLATTEN for x in weights]
    prob = rng.choices(probs, weights=weights)[0]
    note_type = rng.choices(NOTE_TYPES, weights=_NOTE_WEIGHTS)[0]
    group = f"patient-{patient:04d}"
    h = int.from_bytes(hashlib.blake2b(f"{seed}:{group}".encode(), digest_size=8).digest(), "little") / 2.0**64
    yield {"id": f"syn-{i:05d}", "text": _note(note_type, specialty, p, prob, rng), "note_type": note_type,
           "specialty": specialty, "group": group, "split": "test" if h < test_fraction else "train"}


def write_corpus(path: str | Path, n_notes: int = 3000, seed: int = 0) -> Path:
  """Writes the corpus as gzip JSONL, atomically (tmp file + os.replace), byte-identical for the same args."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as raw:
      # mtime=0 and no file name in the header: same bytes every time, so the prepared-data cache key is stable.
      with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as f:
        for record in generate(n_notes, seed):
          f.write((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
    os.replace(tmp, path)
  except BaseException:
    Path(tmp).unlink(missing_ok=True)
    raise
  return path


# Fields of the quick-start corpus for `corpus.Fields(**QUICKSTART_FIELDS)`.
QUICKSTART_FIELDS = {"text": "text", "label": "specialty", "metadata": "note_type", "group": "group",
                     "split": "split", "id": "id"}


def quickstart_corpus_path(cache_dir: str | Path | None = None, *, n_notes: int = 3000, seed: int = 0) -> Path:
  """The quick-start corpus, generated on first use into `cache_dir/synthetic/` (default: `default_cache_dir()`)."""
  if cache_dir is None:
    cache_dir = default_cache_dir()
  path = Path(cache_dir) / "synthetic" / f"quickstart-v{GENERATOR_VERSION}-n{n_notes}-seed{seed}.jsonl.gz"
  if not path.exists():
    write_corpus(path, n_notes, seed)
  return path


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m jaxemb.data.synthetic", description=__doc__.split("\n\n")[0])
  parser.add_argument("out", help="output .jsonl.gz path")
  parser.add_argument("--notes", type=int, default=3000)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  path = write_corpus(args.out, args.notes, args.seed)
  print(f"wrote {args.notes} notes to {path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
